"""Sweep progress: one line per finished job with k/N, elapsed time, ETA and the running best.

A Hydra callback (configured in conf/config.yaml). Jobs may end in other processes (joblib, submitit), so the
state lives in `<sweep dir>/progress.jsonl`: a header written when the multirun starts (start time, job count,
direction, and for a grid the plan: each job's stage keys and which the cache holds), then one record per
finished job (its number, wall time and the stages it built), appended under a file lock.

The ETA is the plan's remaining work at the stage times the sweep has measured (src.report.eta): jobs that still
need a source net trained, an extraction, or only a probe. A search (Optuna) has no plan: its trials are not
known in advance, so its ETA is the median gap between completions times the trials left.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.report import eta as E

log = logging.getLogger(__name__)
PROGRESS = "progress.jsonl"
LOCK_WAIT_SHOWN_S = 1.0  # a finished job's lock wait is named in its progress line from this many seconds


def sweep_plan(config: DictConfig) -> dict[str, Any]:
    """The sweep's size, kind and swept keys: Optuna's n_trials, or the basic sweeper's grid size (its own
    expansion of sweeper.params plus the command-line overrides); total None when it cannot be known."""
    sweeper = config.hydra.sweeper
    params = {str(k): str(v) for k, v in (OmegaConf.select(sweeper, "params", default=None) or {}).items()}
    task = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    direction = OmegaConf.select(sweeper, "direction", default="maximize")
    if OmegaConf.is_config(direction):  # a multi-objective search's list: plain JSON in the progress header
        direction = [str(d) for d in OmegaConf.to_container(direction)]
    plan = {"kind": "grid", "total": None, "swept": list(params), "direction": direction}
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
        plan["swept"] = list(dict.fromkeys(o.key_or_group for o in overrides if o.is_sweep_override()))
    except Exception:  # a sweep syntax this cannot expand alone (glob): the line shows k/?
        overrides = None
    if OmegaConf.select(sweeper, "n_trials", default=None) is not None:
        return {**plan, "kind": "optuna", "total": int(sweeper.n_trials), "swept": list(params) or plan["swept"]}
    if overrides is not None:
        try:
            from src.job_plan import job_overrides

            plan["total"] = len(job_overrides(overrides))
        except Exception:
            pass
    return plan


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(header: dict[str, Any], records: list[dict[str, Any]], now: float) -> str:
    """`job k/N | elapsed | ETA | best` (Optuna: `trial k of n_trials | ... | best of this run`: a continued
    study's earlier trials are not in it)."""
    k, total = len(records), header.get("total")
    elapsed = now - header["start"]
    what = (f"trial {k} of {total if total else '?'}" if header.get("kind") == "optuna"
            else f"job {k}/{total if total else '?'}")
    parts = [what, f"elapsed {_clock(elapsed)}"]
    left = planned_remaining(header, records)
    if left is not None:
        untimed = ", ".join(f"{n} {NOUNS[stage][n != 1]}" for stage, n in left.untimed.items())
        parts.append(f"ETA {'>' if untimed else ''}{_clock(left.seconds)}"
                     + (f" (+ {untimed} not timed yet)" if untimed else ""))
    elif total and k:
        # No plan (a search): the median gap between job completions; a first job that trains the source net
        # does not inflate it for the jobs that reuse the net; with parallel workers a gap is 1/throughput.
        ends = [header["start"]] + [r.get("t", now) for r in records]
        gap = float(np.median(np.diff(ends)))
        parts.append(f"ETA {_clock(max(0, total - k) * gap)}")
    scored = [r for r in records if isinstance(r.get("value"), (int, float)) and math.isfinite(r["value"])]
    # a multi-objective search's value is a list: finite in every objective is a finished trial, not a failure
    failed = k - len(scored) - sum(1 for r in records if isinstance(r.get("value"), list) and r["value"] and all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in r["value"]))
    direction = header.get("direction", "maximize")
    task = records[-1].get("target") if records else None
    if task is not None:
        # Scores of different target tasks are on different scales: the best is the best on the last job's task.
        scored = [r for r in scored if r.get("target") == task]
    if scored and isinstance(direction, str):
        pick = max if direction == "maximize" else min
        best = pick(scored, key=lambda r: r["value"])
        label = ("best of this run" if header.get("kind") == "optuna" else "best") + (f" on {task}" if task else "")
        setting = " ".join(o for o in str(best.get("setting") or "").split() if not o.startswith("target="))
        parts.append(f"{label} {header.get('objective', 'objective')}={best['value']:.4f}"
                     + (f" ({setting})" if setting else ""))
    if failed:
        parts.append(f"{failed} failed")
    waited = records[-1].get("lock_wait") if records else None
    if isinstance(waited, (int, float)) and waited >= LOCK_WAIT_SHOWN_S:
        # A job (an Optuna trial) that held its worker while another built the stage it needs: never silently.
        what = "trial" if header.get("kind") == "optuna" else "job"
        parts.append(f"this {what} waited {waited:.0f}s for a cache lock (another job was building a stage it needs)")
    return "[sweep] " + " | ".join(parts)


NOUNS = {"source": ("source training", "source trainings"), "finetune": ("fine-tuning", "fine-tunings"),
         "features": ("extraction", "extractions")}


def planned_remaining(header: dict[str, Any], records: list[dict[str, Any]]) -> E.Remaining | None:
    """The plan's jobs not finished yet at the stage times the finished ones recorded (None without a plan): a
    finished job's stages count as built, whatever it found in the cache."""
    plan = header.get("plan")
    if not plan or not records:
        return None
    jobs = plan["jobs"]
    done = {r["num"] for r in records if isinstance(r.get("num"), int) and 0 <= r["num"] < len(jobs)}
    cached = {tuple(c) for c in plan.get("cached", [])} | {(s, key) for i in done for s, key in jobs[i].items()}
    times = E.stage_times(records, plan.get("source_walls", []))
    return E.remaining([job for i, job in enumerate(jobs) if i not in done], cached, times, plan.get("workers", 1))


def _job_record(config: DictConfig, started: float | None) -> dict[str, Any]:
    """What the line needs from a finished job's result.json: the shared stages it built, its total seconds and
    the seconds it waited for cache locks (none from a result an earlier run left, for a job it skipped)."""
    from src.record import RESULT

    path = Path(config.hydra.runtime.output_dir) / RESULT
    try:
        if started is not None and path.stat().st_mtime < started:
            return {"built": {}, "total": None}
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"built": {}, "total": None}
    timings = result.get("timings_s") or {}
    total, waited = timings.get("total"), timings.get("lock_wait")
    return {"built": E.built_stages(result), "total": float(total) if total is not None else None,
            "lock_wait": float(waited) if isinstance(waited, (int, float)) else None}


_JOBS_IN_PROCESS = [0]  # a process's first job also pays its imports (torch, lightning): not a per-job cost


_PARSED: dict[str, tuple[list[str], list[Any]]] = {}  # progress file -> its lines and their parsed JSON, as last read


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the records. Lines already parsed by an earlier read are not parsed again: the file only grows
    during a batch (its header carries the plan of every job), and each job's line reads it twice."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    raw, parsed = _PARSED.get(str(path), ([], []))
    if len(lines) < len(raw) or lines[:len(raw)] != raw:  # rewritten (a new batch or sweep): parse it all again
        raw, parsed = [], []
    parsed = parsed + [json.loads(line) for line in lines[len(raw):]]
    _PARSED[str(path)] = (lines, parsed)
    return dict(parsed[0]), parsed[1:]  # (a caller may set a header key before rewriting the file: not in the cache)


def launcher_plans(config: DictConfig) -> bool:
    """Whether the sweep's launcher plans its batches (this project's staged launchers on a grid: `staged.py`)."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    return (target.startswith("hydra_plugins.transferfactors_plugins.") and sweeper.endswith("BasicSweeper")
            and bool(OmegaConf.select(config, "hydra.launcher.stage_scheduling", default=True)))


def take_plan(sweep_dir: Path, plan: dict[str, Any]) -> None:
    """A launcher's plan of one batch (`src.job_plan.from_sweep_plan`) into the progress file's header, merged with
    the batches before it (the header's `jobs` is indexed by job number)."""
    path = Path(sweep_dir) / PROGRESS
    if not path.exists():
        return
    with FileLock(str(path) + ".lock"):
        header, records = _read(path)
        have = header.get("plan") or {"jobs": [], "cached": [], "source_walls": [], "workers": plan["workers"]}
        jobs = list(have["jobs"])
        for num, keys in plan["jobs"].items():
            jobs.extend({} for _ in range(int(num) + 1 - len(jobs)))
            jobs[int(num)] = keys
        cached = sorted({tuple(c) for c in [*have["cached"], *plan["cached"]]})
        header["plan"] = {"jobs": jobs, "cached": cached, "source_walls": [*have["source_walls"], *plan["source_walls"]],
                          "workers": plan["workers"]}
        tmp = path.with_name(f".{PROGRESS}.plan.tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in [header, *records]))
        tmp.replace(path)


class ProgressCallback(Callback):
    """Prints the progress line after each job of a multirun."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import os

        from src.argv import PLAN_ONLY

        if os.environ.get(PLAN_ONLY) == "1":  # --plan: nothing runs, nothing is written
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        objective = config.get("objective", "objective")
        header = {"start": time.time(), "objective": objective if isinstance(objective, str) else "objectives",
                  **sweep_plan(config)}
        try:
            from src.job_plan import job_plan

            # A staged launcher plans the batch itself and hands the plan over (take_plan): not planned twice.
            header["plan"] = None if launcher_plans(config) else job_plan(config)
        except HydraException as e:  # a bad override: the sweeper's own check reports it next, in one line
            log.debug("no sweep plan for the ETA (%s: %s)", type(e).__name__, e)
        except Exception as e:  # the progress line is informational: without a plan it estimates from gaps
            log.warning("sweep plan for the ETA unavailable (%s: %s)", type(e).__name__, e)
        tmp = sweep_dir / f".{PROGRESS}.tmp"
        tmp.write_text(json.dumps(header) + "\n")
        tmp.replace(sweep_dir / PROGRESS)  # a new sweep (or a resumed one) starts a new count

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.time()  # the same callback object sees the job's end, in the job's process
        self._cold = _JOBS_IN_PROCESS[0] == 0
        _JOBS_IN_PROCESS[0] += 1

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode", default=None) != RunMode.MULTIRUN:
            return
        path = Path(config.hydra.sweep.dir) / PROGRESS
        if not path.exists():
            return
        try:
            value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
                value = [float(v) for v in value]  # a multi-objective search's trial
            else:
                value = float(value) if isinstance(value, (int, float)) else None
            with FileLock(str(path) + ".lock"):
                header, _ = _read(path)
                swept = set(header.get("swept") or [])
                chosen = [o.split("=", 1) for o in (job_return.overrides or []) if "=" in o]
                setting = " ".join(f"{k}={v}" for k, v in chosen if k in swept)
                task = next((v for k, v in chosen if k == "target"), None) if "target" in swept else None
                started, end = getattr(self, "_started", None), time.time()
                record = {"t": end, "value": value, "setting": setting, "target": task,
                          "num": OmegaConf.select(config, "hydra.job.num", default=None),
                          "wall": end - started if started is not None else None,
                          "cold": getattr(self, "_cold", None), **_job_record(config, started)}
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                header, records = _read(path)
            print(progress_line(header, records, time.time()), flush=True)
        except Exception as e:  # progress is informational: never fail a job over it
            log.warning("progress line unavailable (%s: %s)", type(e).__name__, e)
