"""python -m src.data [extensions=[mypkg.ext]]: the table of target tasks (group, a priori distance from the
source, metric, data).

Reads conf/target/*.yaml and the task registry only (no torch, no data), ordered by distance_rank; a target whose
task no imported module registers is listed as such (`extensions=[...]` imports the user's modules first).
"""

from __future__ import annotations

from omegaconf import OmegaConf

import src
from src.data.tasks import TASKS


def task_rows() -> list[dict]:
    rows = []
    for path in sorted((src.REPO_ROOT / "conf" / "target").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        task = TASKS.get(cfg.data.task)
        what = task.describe(cfg.data) if task else f"task {cfg.data.task!r} is not registered (extensions=[...]?)"
        rows.append({"target": cfg.name, "group": cfg.group, "distance_rank": cfg.distance_rank,
                     "metric": cfg.metric, "evaluator": cfg.evaluator, "data": what})
    # synth_shift has no rank (its distance is target.data.shift): listed last.
    return sorted(rows, key=lambda r: (r["distance_rank"] is None, r["distance_rank"] or 0, r["target"]))


def main(argv: list[str] | None = None) -> None:
    import sys

    from src.errors import ConfigError
    from src.registry import import_extensions

    for arg in sys.argv[1:] if argv is None else argv:
        key, _, value = arg.partition("=")
        if key != "extensions":
            sys.exit(f"error: {arg!r}: python -m src.data takes only extensions=[module, ...]")
        try:
            import_extensions(value)
        except ConfigError as e:
            sys.exit(f"error: {e}")
    rows = task_rows()
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


if __name__ == "__main__":
    main()
