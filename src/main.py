"""Hydra entry point: compose -> check -> run stages -> result.json; returns the target score.

    python -m src.main                                   # one experiment with the defaults
    python -m src.main -m arch=alexnet,vgg layer=fc6,fc7 # a grid; shared stages are computed once

Torch is imported only once the config has passed the check, so `--help`, `--cfg job` and bad input are fast.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import socket
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import src  # noqa: F401  (registers the ${repo_root:} resolver)
from src import tracking
from src.cache import atomic_write_text, make_key
from src.check import validate
from src.errors import ConfigError, one_line
from src.argv import PLAN_ONLY  # set by `--plan`: the launcher prints the sweep's plan and runs nothing
from src.record import NOT_TRAINED_HERE, PER_IMAGE, RESULT, Result, chosen_val_score, factors

log = logging.getLogger("src.main")
# Hydra 1.4 warns about every config-named _target_ without an execution whitelist; ours (src.*) are trusted.
warnings.filterwarnings("ignore", message=r"hydra\.utils\.instantiate\(\) resolved _target_='src\.")
FULL_ERROR_ASKED = "TRANSFER_FULL_ERROR"  # the user's HYDRA_FULL_ERROR, kept by run_cli (which sets Hydra's to 1)


def config_hash(cfg: DictConfig | dict) -> str:
    """Hash of the resolved config (or of its plain resolved copy) that decides whether a sweep job is already done
    (resume). Without `paths.cache_dir`: where the cache is mounted does not change what a job computes."""
    resolved = dict(cfg) if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    resolved["paths"] = {k: v for k, v in resolved.get("paths", {}).items() if k != "cache_dir"}
    if not resolved.get("extensions"):  # none: as before the key existed (a resumed sweep stays done)
        resolved.pop("extensions", None)
    return make_key(resolved)


def save_per_image(out_dir: Path, per_image: dict[str, Any] | None) -> None:
    """Write the per-test-image correctness (when the evaluator has one) atomically: temp file, then rename."""
    import numpy as np

    arr = (per_image or {}).get("test_correct")
    if arr is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{PER_IMAGE}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(arr, dtype=np.uint8))
    os.replace(tmp, out_dir / PER_IMAGE)


_STARTED: list = []  # this process's start, read once (not functools.cache: jobs pickle this module's functions)


def _process_start() -> float | None:
    """When this process started (unix seconds; Linux /proc), so that a scheduler's per-task overhead (interpreter,
    imports, config composition before the job's own work) can be told apart from the job's time. Read once per
    process: /proc/stat takes tens of ms to read on a many-core host."""
    if not _STARTED:
        _STARTED.append(_read_process_start())
    return _STARTED[0]


def _read_process_start() -> float | None:
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _clock(start: float, imported: float | None) -> dict[str, Any]:
    """When and where the job ran: its process's start, the job's start, when the stages' libraries were imported
    (torch and the rest: the first job of a process pays for them), its end (unix seconds), the host."""
    return {"process_start": _process_start(), "start": round(start, 3),
            "imported": round(imported, 3) if imported else None, "end": round(time.time(), 3),
            "host": socket.gethostname()}


def execute(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Check and run one experiment, writing `out_dir/result.json` (a `Result`) whether it succeeds or fails."""
    t0, start, imported = time.perf_counter(), time.time(), None
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)  # once: the resume hash and the schema check both read it
    except OmegaConfBaseException:  # an interpolation to a ??? value (target.data.root: ${..root}): the check names it
        plain = None
    digest = config_hash(plain) if plain is not None else ""
    plan = None
    try:
        tracking.check(cfg)
        plan = validate(cfg, plain)
        from src.experiment import run_experiment  # heavy imports (torch, lightning) only past the check

        imported = time.time()
        run = run_experiment(cfg, plan)
        save_per_image(out_dir, run.pop("per_image", None))
        result = Result(status="ok", config_hash=digest, factors=factors(cfg, plan), clock=_clock(start, imported),
                        **run)
    except Exception as e:
        result = Result(status="failed", config_hash=digest, factors=_factors_or_none(cfg, plan),
                        timings_s={"total": time.perf_counter() - t0}, clock=_clock(start, imported),
                        error={"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()})
        text = result.to_json()
        atomic_write_text(out_dir / RESULT, text, durable=False)
        _track(cfg, json.loads(text), out_dir)
        raise
    text = result.to_json()
    atomic_write_text(out_dir / RESULT, text, durable=False)
    record = json.loads(text)
    _track(cfg, record, out_dir)
    return record


def _track(cfg: DictConfig, result: dict[str, Any], out_dir: Path) -> None:
    """One tracker run per job (logger=tensorboard|mlflow), named by the job's overrides."""
    if OmegaConf.select(cfg, "logger.name", default="csv") == "csv":
        return
    run_name = version = out_dir.name
    if HydraConfig.initialized():  # not when tests call execute directly
        job = HydraConfig.get().job
        run_name = job.override_dirname or job.name
        version = str(job.num) if OmegaConf.select(job, "num", default=None) is not None else out_dir.name
    tracking.log_job(cfg, result, run_name, version)


def _factors_or_none(cfg: DictConfig, plan) -> dict[str, Any]:
    """The factor table of a job that failed, or {} when its config does not even resolve (`layer=${nope}`): the
    failure is recorded either way. Without a plan (a job ended from outside, or one whose tracker check failed)
    the config check is run here, so that a valid job records what its plan decides (a library net: no source, no
    width); only a config that fails the check records its values as given."""
    if plan is None:
        try:
            plan = validate(cfg)
        except Exception:  # noqa: BLE001
            plan = None
    try:
        return factors(cfg, plan)
    except Exception:  # noqa: BLE001
        return {}


def record_unfinished(cfg: DictConfig, out_dir: Path, message: str, log_path: str | None = None,
                      error_type: str = "JobEnded") -> None:
    """A failed result.json for a job whose process was ended from outside (a scheduler's cancel or time
    limit: `JobEnded`) or that never ran because a stage it needs was not built (`DependencyNeverSatisfied`),
    written by whoever launched it, so that the sweep's summary and a rerun see it as failed."""
    result = Result(status="failed", config_hash="", factors=_factors_or_none(cfg, None),
                    error={"type": error_type, "message": message, "log": log_path})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RESULT, result.to_json(), durable=False)


def objective(cfg: DictConfig, result: dict[str, Any] | None) -> float | list[float]:
    """What a sweeper optimises: `cfg.objective` names one metric, or a list of them (multi-objective).

    A failed job gives NaN, which Optuna records as a failed trial without stopping the study. With an
    `estimator` (no probe is trained), `target_score` stands for the estimator's score. An estimator's name
    (`objective=sfda`) optimises that estimate while the probe still measures each trial, so the report can give
    the regret of the estimator's choice in probe score.
    """
    names = [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)
    values = []
    for name in names:
        if result is None or result.get("status") != "ok":
            values.append(math.nan)
            continue
        metrics = result["metrics"]
        if name == "val_score":
            value = chosen_val_score(metrics)
            if value is None:  # no C search (a retrieval target; an estimator instead of the probe)
                name = "target_score"
                log.info("objective val_score: this job has no val score (%s); a search reads its test score",
                            "an estimator replaced the probe" if metrics.get("target_score") is None
                            else "no C search on this target")
            else:
                values.append(float(value))
                continue
        if name == "target_score" and metrics.get("target_score") is None:
            name = "estimator_score"
        if name == "probe_dim":
            dimred = cfg.get("dimred") or {}
            pca = dimred.get("name", "none") != "none" and dimred.get("n_components") is not None
            values.append(float(min(int(dimred["n_components"]), int(metrics["feature_dim"])) if pca
                                else metrics["feature_dim"]))
            continue
        values.append(float({**result["timings_s"], **metrics, **(metrics.get("transferability") or {})}[name]))
    return values[0] if isinstance(cfg.objective, str) else values


def hit_word(hit: bool) -> str:
    return "hit" if hit else "miss"


def _threads_per_job(hc) -> int | None:
    """Torch threads for one job of a parallel launcher, so that n_jobs jobs share the cores."""
    n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)
    if not n_jobs or n_jobs == 1:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else n_jobs))


def previous_result(out_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """The job's earlier result.json if it finished ok with this exact resolved config (sweep resume)."""
    try:
        prev = json.loads((out_dir / RESULT).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    ok = prev.get("status") == "ok"  # first: a config that does not resolve has only failed results
    return prev if ok and prev.get("config_hash") == config_hash(cfg) else None


def job_config(cfg: DictConfig, hc: DictConfig, out_dir: Path) -> None:
    """What a job sets in its own config before it runs (in place): threads per parallel job, a tracker's default
    home. A sweep's plan (`src.sweep_plan`) calls it too, so that it hashes each job's config as the job will."""
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun and cfg.trainer.num_threads is None:
        OmegaConf.update(cfg, "trainer.num_threads", _threads_per_job(hc))
    if OmegaConf.select(cfg, "logger.save_dir", default="unset") is None:  # a tracker's default home
        OmegaConf.update(cfg, "logger.save_dir", hc.sweep.dir if multirun else str(out_dir))


@hydra.main(config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if os.environ.get(PLAN_ONLY) == "1":  # --plan must never run a job: a launcher that cannot plan got here
        from src.argv import plannable_launchers

        sys.exit(f"error: --plan: the launcher {OmegaConf.select(hc, 'launcher._target_')} cannot show a plan; "
                 f"use hydra/launcher={', '.join(plannable_launchers())}")
    job_config(cfg, hc, out_dir)
    if multirun and (prev := previous_result(out_dir, cfg)) is not None:
        log.info("job %s: already done with this config, skipping (%s)", hc.job.num, out_dir / RESULT)
        return objective(cfg, prev)
    try:
        result = execute(cfg, out_dir)
    except ConfigError as e:
        if multirun:
            log.error("job %s: config error: %s", hc.job.num, e)
            return objective(cfg, None)
        sys.exit(f"error: {e}")
    except Exception as e:
        if multirun:
            # One failed job must not end a sweep; result.json records it and the sweeper sees a NaN.
            log.error("job %s failed (%s: %s); recorded in %s", hc.job.num, type(e).__name__, e, out_dir / RESULT)
            return objective(cfg, None)
        if os.environ.get(FULL_ERROR_ASKED) == "1":
            raise
        # Exit here: re-raised, Hydra would add its own "Error executing job" line.
        sys.exit(f"error: {one_line(e)} (traceback in {out_dir / RESULT}; HYDRA_FULL_ERROR=1 prints it)")
    m, c = result["metrics"], result["cache"]
    what = (f"{cfg.target.metric}): {m['target_score']:.4f}" if m["target_score"] is not None
            else f"{m['estimator']} estimate): {m['estimator_score']:.4f}")
    src_acc = "n/a (not trained here)" if m["source_val_acc"] is None else f"{m['source_val_acc']:.3f}"
    library_net = result["factors"].get("source") == NOT_TRAINED_HERE  # no source stage to hit or miss
    stages = ", ".join(f"{k[:-4]} {hit_word(v)}" for k, v in c.items()
                       if v is not None and not (k == "source_hit" and library_net))
    net = result["factors"].get("model") or f"{cfg.arch.name}/{result['factors'].get('width')}"
    print(
        f"target {cfg.target.name} ({what} | layer {cfg.layer} of {net}, source val acc {src_acc} | "
        f"cache: {stages} | {result['timings_s']['total']:.1f}s | {out_dir / RESULT}"
    )
    return objective(cfg, result)


def unknown_override(e: BaseException) -> ConfigError | None:
    """Hydra's "Could not override 'key'" (a plain `key=value` whose key the composed config lacks) as the config
    check's line for an unknown key (`src.schema.absent_key`: the nearest valid key, or where the key is valid);
    None for any other error, and for Hydra's own keys."""
    from src.schema import absent_key

    found = re.search(r"Could not override '([^']+)'\.\s*To append to your config use \+(\S+)", str(e))
    if found is None or not type(e).__module__.startswith("hydra"):
        return None
    cause = e.__cause__  # OmegaConf's error: the node that lacks the key, and the first missing part's full key
    parent = getattr(cause, "parent_node", None)
    missing = str(getattr(cause, "full_key", "") or "")
    parent_path = missing.rpartition(".")[0] if found.group(1).startswith(missing) else ""
    try:
        root = parent._get_root() if isinstance(parent, DictConfig) else None
    except Exception:  # noqa: BLE001  (only names the group's choice)
        root = None
    if isinstance(root, DictConfig):  # the keys the user's modules declare (a task's own option), as the check knows
        from src.registry import import_extensions

        try:
            import_extensions(OmegaConf.select(root, "extensions", default=None))
        except ConfigError as bad:  # what the check would say first
            return bad
    return absent_key(found.group(1), found.group(2), parent, parent_path, root)


class OutputDirCheck(Callback):
    """hydra.run.dir / hydra.sweep.dir checked before anything makes them, in one line naming the key (Hydra's own
    mkdir fails with a bare FileNotFoundError). First among the callbacks: the progress callback makes the sweep
    dir. It exits rather than raising: Hydra turns a callback's exception into a warning and goes on."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir("hydra.sweep.dir", config.hydra.sweep.dir)


def _check_output_dir(key: str, value: Any) -> None:
    from src.check import check_writable_dir

    try:
        check_writable_dir(key, value)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def run_cli() -> None:
    """`main()` with every failure as one line on stderr and exit code 1 (the traceback is in result.json).

    Hydra prints its own multi-line reports unless HYDRA_FULL_ERROR=1, so we set it for Hydra and print one
    line ourselves; a user who sets HYDRA_FULL_ERROR=1 gets the full traceback as usual.
    """
    from src import compose_once, config_copy
    from src.argv import prepare

    try:  # before Hydra prints or saves the overrides (a storage URL's password goes to PGPASSWORD)
        sys.argv = [sys.argv[0], *prepare(sys.argv[1:])]
    except ConfigError as e:
        sys.exit(f"error: {e}")
    compose_once.install()  # a sweep job's config is composed once, not twice (sweeper check + launcher)
    config_copy.install()  # Hydra deep-copies each job's config 4-5 times: without OmegaConf's node constructors
    os.environ[FULL_ERROR_ASKED] = os.environ.get("HYDRA_FULL_ERROR", "0")
    if os.environ[FULL_ERROR_ASKED] == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
        # A sweep leaves hundreds of thousands of objects (every job's config, the plan, the report's tables), which
        # the interpreter's last garbage collection would walk for seconds on its way out: nothing is left to free.
        gc.freeze()
    except Exception as e:  # noqa: BLE001  (the one place every error reaches the user)
        if "Record does not exist" in str(e):  # Optuna's study.best_trial when no trial finished
            sys.exit("error: every trial of the Optuna study failed, so it has no best trial; each job's "
                     "result.json under the sweep dir says why (hydra.sweeper.n_trials=... to try more)")
        if (unknown := unknown_override(e)) is not None:  # source.num_clases=10: as +source.num_clases=10 says it
            sys.exit(f"error: {unknown}")
        sys.exit(f"error: {one_line(e)} (HYDRA_FULL_ERROR=1 for the traceback)")


if __name__ == "__main__":
    run_cli()
