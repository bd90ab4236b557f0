"""python -m src.tasks: the table of target tasks (group, a priori distance from the source, metric, data).

Reads conf/target/*.yaml only (no torch, no data), ordered by distance_rank.
"""

from __future__ import annotations

from omegaconf import OmegaConf

import src


def task_rows() -> list[dict]:
    rows = []
    for path in sorted((src.REPO_ROOT / "conf" / "target").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        data = cfg.data
        if data.task == "torchvision":
            what = f"torchvision {data.dataset} (paths.data_dir)"
        elif data.task == "imagefolder":
            what = "ImageFolder tree (target.root)"
        elif data.task == "multilabel":
            what = f"multilabel: {data.num_classes} labels, {data.train_images}/{data.val_images}/{data.test_images} images"
        elif data.task == "retrieval":
            what = f"{data.num_instances} instances: {data.database_per_instance} database + {data.queries_per_instance} query views"
        else:
            test = "rest" if data.get("test_per_class") is None else data.test_per_class
            what = f"{data.task}: {data.num_classes} classes, {data.train_per_class}/{data.val_per_class}/{test} per class"
        rows.append({"target": cfg.name, "group": cfg.group, "distance_rank": cfg.distance_rank,
                     "metric": cfg.metric, "evaluator": cfg.evaluator, "data": what})
    return sorted(rows, key=lambda r: (r["distance_rank"], r["target"]))


def main() -> None:
    rows = task_rows()
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


if __name__ == "__main__":
    main()
