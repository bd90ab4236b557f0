"""python -m src.data: the table of target tasks (group, a priori distance from the source, metric, data).

Reads conf/target/*.yaml and the task registry only (no torch, no data), ordered by distance_rank.
"""

from __future__ import annotations

from omegaconf import OmegaConf

import src
from src.data.tasks import TASKS


def task_rows() -> list[dict]:
    rows = []
    for path in sorted((src.REPO_ROOT / "conf" / "target").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        what = TASKS[cfg.data.task].describe(cfg.data)
        rows.append({"target": cfg.name, "group": cfg.group, "distance_rank": cfg.distance_rank,
                     "metric": cfg.metric, "evaluator": cfg.evaluator, "data": what})
    # synth_shift has no rank (its distance is target.data.shift): listed last.
    return sorted(rows, key=lambda r: (r["distance_rank"] is None, r["distance_rank"] or 0, r["target"]))


def main() -> None:
    rows = task_rows()
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


if __name__ == "__main__":
    main()
