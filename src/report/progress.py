"""Sweep progress: one line per finished job with k/N, elapsed time, ETA and the running best.

A Hydra callback (configured in conf/config.yaml). Jobs may end in other processes (joblib, submitit), so the
state lives in `<sweep dir>/progress.jsonl`: a header written when the multirun starts (start time, job count,
direction), then one record per finished job, appended under a file lock.
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
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

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
            from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

            plan["total"] = sum(len(b) for b in BasicSweeper.split_arguments(overrides, None))
        except Exception:
            pass
    return plan


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(header: dict[str, Any], records: list[dict[str, Any]], now: float) -> str:
    """`job k/N | elapsed | ETA | best` (Optuna: `trial k of n_trials | ... | best so far`)."""
    k, total = len(records), header.get("total")
    elapsed = now - header["start"]
    what = (f"trial {k} of {total if total else '?'}" if header.get("kind") == "optuna"
            else f"job {k}/{total if total else '?'}")
    parts = [what, f"elapsed {_clock(elapsed)}"]
    if total and k:
        # The median gap between job completions: a first job that trains the source net (minutes, once) does
        # not inflate the estimate for the jobs that reuse it; with parallel workers a gap is 1/throughput.
        ends = [header["start"]] + [r.get("t", now) for r in records]
        gap = float(np.median(np.diff(ends)))
        parts.append(f"ETA {_clock(max(0, total - k) * gap)}")
    scored = [r for r in records if isinstance(r.get("value"), (int, float)) and math.isfinite(r["value"])]
    failed = k - len(scored)
    direction = header.get("direction", "maximize")
    if scored and isinstance(direction, str):
        pick = max if direction == "maximize" else min
        best = pick(scored, key=lambda r: r["value"])
        label = "best so far" if header.get("kind") == "optuna" else "best"
        parts.append(f"{label} {header.get('objective', 'objective')}={best['value']:.4f}"
                     + (f" ({best['setting']})" if best.get("setting") else ""))
    if failed:
        parts.append(f"{failed} failed")
    waited = records[-1].get("lock_wait") if records else None
    if isinstance(waited, (int, float)) and waited >= LOCK_WAIT_SHOWN_S:
        # A job (an Optuna trial) that held its worker while another built the stage it needs: never silently.
        what = "trial" if header.get("kind") == "optuna" else "job"
        parts.append(f"this {what} waited {waited:.0f}s for a cache lock (another job was building a stage it needs)")
    return "[sweep] " + " | ".join(parts)


def _lock_wait(job_return: JobReturn) -> float | None:
    """Seconds the job waited for cache locks (its result.json's `timings_s.lock_wait`), None if unknown."""
    try:
        result = json.loads((Path(str(job_return.working_dir)) / "result.json").read_text())
        return float(result["timings_s"]["lock_wait"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[0], lines[1:]


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
        tmp = sweep_dir / f".{PROGRESS}.tmp"
        tmp.write_text(json.dumps(header) + "\n")
        tmp.replace(sweep_dir / PROGRESS)  # a new sweep (or a resumed one) starts a new count

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode", default=None) != RunMode.MULTIRUN:
            return
        path = Path(config.hydra.sweep.dir) / PROGRESS
        if not path.exists():
            return
        try:
            value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
            value = float(value) if isinstance(value, (int, float)) else None
            waited = _lock_wait(job_return)
            with FileLock(str(path) + ".lock"):
                header, _ = _read(path)
                swept = set(header.get("swept") or [])
                setting = " ".join(o for o in (job_return.overrides or []) if o.split("=", 1)[0] in swept)
                with path.open("a") as f:
                    f.write(json.dumps({"t": time.time(), "value": value, "setting": setting,
                                        "lock_wait": waited}) + "\n")
                header, records = _read(path)
            print(progress_line(header, records, time.time()), flush=True)
        except Exception as e:  # progress is informational: never fail a job over it
            log.warning("progress line unavailable (%s: %s)", type(e).__name__, e)
