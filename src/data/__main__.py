"""python -m src.data [extensions=[mypkg.ext]] [hydra.searchpath=[file:///my/conf]]: the table of target tasks
(group, a priori distance from the source, metric, data).

Reads conf/target/*.yaml (and <dir>/target/*.yaml of each `file://` dir of `hydra.searchpath`, where a user keeps
the yaml files of their own targets, as `python -m src.main` reads them) and the task registry only (no torch, no
data), ordered by distance_rank; a target whose task no imported module registers is listed as such
(`extensions=[...]` imports the user's modules first).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

import src
from src.data.tasks import TASKS


def task_rows(search: list[str] | None = None) -> list[dict]:
    """One row per target yaml of conf/target and of each dir in `search` (their `target/` sub-dirs)."""
    rows, dirs = [], [src.REPO_ROOT / "conf", *map(Path, search or [])]
    for path in [p for d in dirs for p in sorted((d / "target").glob("*.yaml"))]:
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

    search: list[str] = []
    for arg in sys.argv[1:] if argv is None else argv:
        key, _, value = arg.partition("=")
        if key == "hydra.searchpath":  # its file:// dirs (a pkg:// entry is a package's: not listed here)
            for entry in (e.strip() for e in value.strip("[]").split(",") if e.strip()):
                if entry.startswith("pkg://"):
                    continue
                if not entry.startswith("file://") or not Path(entry[7:]).is_dir():
                    sys.exit(f"error: hydra.searchpath has {entry!r}, not an existing directory; valid: "
                             "file:///abs/path or file://rel/path")
                search.append(entry[7:])
            continue
        if key != "extensions":
            sys.exit(f"error: {arg!r}: python -m src.data takes only extensions=[module, ...] and "
                     "hydra.searchpath=[file://DIR, ...]")
        try:
            import_extensions(value)
        except ConfigError as e:
            sys.exit(f"error: {e}")
    rows = task_rows(search)
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


if __name__ == "__main__":
    main()
