"""The jobs a sweep was to run that left no result.json (killed, still running, not started), so that the report
counts and names them instead of reporting the jobs that finished as the whole sweep.

The expected jobs are the launcher's plan (`<sweep dir>/plan.json`, src.sweep_plan: each job's number, overrides and
output dir, written before any job runs) and every job dir Hydra started (it writes `.hydra/` when a job starts); a
sweep without a plan (a search, stage scheduling off) names only the jobs that started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SHOWN = 3  # jobs named in the summary line; the rest are counted (the failed-jobs section lists them all)


@dataclass
class Missing:
    num: int | None  # hydra.job.num (None: a job dir whose name is not its number)
    job_dir: Path
    overrides: list[str]
    started: bool  # its dir exists (Hydra started it): killed or still running; else not started


def _job_dir(sweep: Path, out_dir: str) -> Path:
    """A planned job's dir under `sweep`: the plan holds it as the launcher saw it (relative to where it ran, usually
    the repo root); a sweep dir moved since keeps the job's own dir name (Hydra's default subdir: its number)."""
    p = Path(out_dir)
    try:
        return sweep / (p if p.is_absolute() else Path.cwd() / p).resolve().relative_to(sweep.resolve())
    except ValueError:
        return sweep / p.name


def _plan(sweep: Path) -> dict[Path, tuple[int | None, list[str], Path]] | None:
    """The plan's jobs by their resolved dir: (number, overrides, dir under `sweep`)."""
    from src.sweep_plan import PLAN_FILE

    try:
        jobs = json.loads((sweep / PLAN_FILE).read_text())["jobs"]
        dirs = [_job_dir(sweep, j["out_dir"]) for j in jobs]
        return {d.resolve(): (int(j["num"]), [str(o) for o in j["overrides"]], d) for j, d in zip(jobs, dirs)}
    except (OSError, ValueError, KeyError, TypeError):  # no plan (or not one this reads): the job dirs only
        return None


def _overrides(job_dir: Path) -> list[str]:
    import yaml

    try:
        return [str(o) for o in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, yaml.YAMLError, TypeError):
        return []


def missing_jobs(sweep: Path, result_dirs: set[Path]) -> tuple[int, bool, list[Missing]]:
    """(jobs expected, whether a plan lists them, those without a result.json in job-number order). `result_dirs`:
    the resolved dirs of the sweep's result.json files."""
    from src.record import RESULT

    plan = _plan(sweep) or {}
    started = {p.parent.resolve(): p.parent for p in sweep.rglob(".hydra") if p.is_dir()}
    expected = set(plan) | set(started) | {d for d in result_dirs if d.is_relative_to(sweep.resolve())}
    missing = []
    for d in expected - result_dirs:
        if (d / RESULT).exists():  # written since the results were read (a job still running)
            continue
        num, overrides, path = plan.get(d) or (int(d.name) if d.name.isdigit() else None, _overrides(d), started[d])
        missing.append(Missing(num, path, overrides, d in started))
    missing.sort(key=lambda m: (m.num is None, m.num or 0, str(m.job_dir)))
    return len(expected), bool(plan), missing


def swept_keys(sweep: Path) -> set[str] | None:
    """The keys the sweep varies, from its multirun.yaml (the sweeper's params and the command line's sweeps)."""
    from omegaconf import OmegaConf

    from src.report.progress import sweep_plan

    try:
        return set(sweep_plan(OmegaConf.load(sweep / "multirun.yaml"))["swept"]) or None
    except Exception:  # noqa: BLE001  (no record, or one this cannot expand: every override is shown)
        return None


def setting(m: Missing, keys: set[str] | None) -> str:
    """A job's swept overrides (all of them without a record of what was swept), e.g. `layer=fc6 target=near`."""
    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("~+").split("@", 1)[0]

    shown = [o for o in m.overrides if keys is None or key(o) in keys] or m.overrides
    return " ".join(shown)


def census(dirs: Iterable[Path], result_dirs: Iterable[str]) -> dict:
    """The jobs expected (planned or started, and every result read), whether a plan lists them, and each job
    without a result.json."""
    have = {Path(d).resolve() for d in result_dirs}
    total, planned, rows, covered = 0, False, [], set()
    for sweep in (Path(d) for d in dirs):
        if not sweep.is_dir():  # a result.json given directly: nothing else expected
            continue
        n, from_plan, missing = missing_jobs(sweep, have)
        total, planned = total + n, planned or from_plan
        covered |= {d for d in have if d.is_relative_to(sweep.resolve())}
        keys = swept_keys(sweep) if missing else None
        rows += [{"num": m.num, "job_dir": str(m.job_dir), "setting": setting(m, keys), "overrides": m.overrides,
                  "started": m.started} for m in missing]
    return {"expected": total + len(have - covered), "from_plan": planned, "without_result": rows}


def summary(census: dict, n_results: int, n_ok: int) -> str:
    """The report's Jobs line: e.g. `36 planned, 35 with results (34 ok, 1 failed), 1 without a result (#17:
    layer=fc6 target=near; killed or still running)`."""
    counts = f"{n_ok} ok, {n_results - n_ok} failed"
    rows = census["without_result"]
    if not rows:
        return f"Jobs: {n_results} ({counts})"
    named = ", ".join(f"#{r['num'] if r['num'] is not None else r['job_dir']}" + (f": {r['setting']}" if r["setting"]
                                                                                  else "") for r in rows[:SHOWN])
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    started = {r["started"] for r in rows}
    why = ("killed or still running" if started == {True} else "not started" if started == {False}
           else "killed, still running or not started")
    return (f"Jobs: {census['expected']} {'planned' if census['from_plan'] else 'started'}, {n_results} with results "
            f"({counts}), {len(rows)} without a result ({named}{more}; {why})")
