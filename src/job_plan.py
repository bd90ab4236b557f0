"""A grid sweep's jobs before they run, for the progress line's ETA (src.report.progress, src.report.eta): each job
composed as the launcher will compose it, the cache keys of the shared stages it runs (src.keys.stage_keys), which
of those the cache already holds, and what the cache recorded about training the sweep's source nets.

Run by the progress callback when a multirun starts, in the sweep's own process; torch-free. This project's staged
launchers plan each batch anyway (`src.sweep_plan`): with them the callback plans nothing and the launcher hands
its plan over (`from_sweep_plan`, `src.report.progress.take_plan`), so no job is checked and keyed twice.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf, open_dict

from src.patching import Guard

BUILT = ("source", "finetune", "features")  # content-addressed: built once per key, then shared

# The sweep's expansion is the basic sweeper's own (`split_arguments`, a Hydra internal): used only on a version it was
# tested against; `TRANSFER_PATCH_JOB_PLAN=0` turns it off (the progress line then estimates from finished jobs only).
GUARD = Guard("job_plan", "hydra-core", ("1.4.0rc3",), "no per-stage ETA plan; the count and ETA from finished jobs")


def job_overrides(overrides) -> list[list[str]]:
    """Each job's override list, in job-number order: the basic sweeper's own expansion (RuntimeError when the
    guard is off: the caller shows no total)."""
    if not GUARD.allowed():
        raise RuntimeError("job_plan guard off")
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def _workers(config: DictConfig) -> int:
    """How many jobs run at once: joblib's n_jobs (-1: every core), a SLURM array's parallelism, else 1."""
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    if launcher is None:
        return 1
    n = OmegaConf.select(launcher, "n_jobs", default=None) or OmegaConf.select(launcher, "array_parallelism",
                                                                               default=None)
    if isinstance(n, int) and n < 0:
        return os.cpu_count() or 1
    return int(n) if isinstance(n, int) and n > 0 else 1


def job_plan(config: DictConfig) -> dict[str, Any] | None:
    """A grid's jobs as the launcher will compose them, each with the cache keys of the shared stages it runs
    (src.keys.stage_keys; {} for a job its config check rejects: it stops before any work), the keys whose entries
    the cache holds, the trainings the cache recorded for the sweep's sources, and the parallel workers. None for
    a search (Optuna) or a sweep this cannot expand."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src import compose_once
    from src.cache import Store
    from src.check import validate
    from src.errors import ConfigError
    from src.keys import stage_keys
    from src.sweep_plan import RANDOM_INIT, weights_digest

    sweeper = config.hydra.sweeper
    if OmegaConf.select(sweeper, "n_trials", default=None) is not None or not GUARD.allowed():
        return None
    params = {str(k): str(v) for k, v in (OmegaConf.select(sweeper, "params", default=None) or {}).items()}
    task = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
    loader = GlobalHydra.instance().config_loader()
    jobs, roots, stores = [], [], {}
    # Jobs that differ in plain values share their defaults list, as in the validation, which then (with the basic
    # launcher) takes these configs instead of composing the jobs again.
    with compose_once.batch():
        for job in job_overrides(overrides):
            cfg = copy.copy(compose_once.compose_ahead(loader, config, job))  # the launcher's own: not changed
            with open_dict(cfg):
                del cfg["hydra"]  # as the job gets it (Hydra's run_job)
            root = Path(str(cfg.paths.cache_dir))
            try:
                plan = validate(cfg)
                # A pretrained net's keys hash its weights' content, as the job's will (src.experiment).
                digest = weights_digest(plan, stores.setdefault(root, Store(root))) if plan.spec.pretrained else None
                keys = {} if plan.spec.pretrained and digest is None else {
                    stage: key for stage, key in stage_keys(cfg, plan, None if digest == RANDOM_INIT else digest).items()
                    if key is not None and stage in BUILT and not (stage == "source" and plan.spec.pretrained)}
            except ConfigError:
                keys = {}
            jobs.append(keys)
            roots.append(root)
    for root in roots:
        stores.setdefault(root, Store(root))
    # An entry's directory appears by an atomic rename once it is complete; it is not re-hashed here (Store.lookup
    # would hash every cached file of the sweep before its first job): a damaged one costs the ETA one rebuild.
    cached = sorted({(s, k) for keys, root in zip(jobs, roots) for s, k in keys.items()
                     if stores[root].path(s, k).is_dir()})
    sources = {(root, keys["source"]) for keys, root in zip(jobs, roots) if "source" in keys}
    walls = [w for root, key in sources for w in source_walls(root, [key])]
    return {"jobs": jobs, "cached": cached, "source_walls": walls, "workers": _workers(config)}


def from_sweep_plan(plan, config: DictConfig) -> dict[str, Any]:
    """What `job_plan` gives, for the batch a launcher has planned (`src.sweep_plan.SweepPlan`), read off that plan
    instead of checking and keying every job a second time: {"jobs": {num: keys}, ...} (a batch's job numbers)."""
    jobs: dict[int, dict[str, str]] = {}
    cached: set[tuple[str, str]] = set()
    for job in plan.jobs:
        keys: dict[str, str] = {}
        for uid in job.units():
            unit = plan.units[uid]
            for name, key in unit.keys.items():
                if name in BUILT:
                    keys[name] = key
                    if name not in unit.missing:
                        cached.add((name, key))
        jobs[job.num] = keys
    sources = sorted({keys["source"] for keys in jobs.values() if "source" in keys})
    return {"jobs": jobs, "cached": sorted(cached), "source_walls": source_walls(Path(plan.cache_dir), sources),
            "workers": _workers(config)}


def source_walls(cache_root: Path, keys: Iterable[str]) -> list[float]:
    """The training times (`wall_s`) the cache recorded for these source entries."""
    walls = []
    for key in keys:
        try:
            walls.append(float(json.loads((cache_root / "source" / key / "metrics.json").read_text())["wall_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return walls
