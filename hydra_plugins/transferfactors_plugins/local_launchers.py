"""`hydra/launcher=basic` (the default) and `hydra/launcher=joblib` with the sweep's stages in order.

Both are Hydra's launchers (`conf/hydra/launcher/basic.yaml` and `joblib.yaml` put these in their place), and a
grid sweep runs as planned (`src.sweep_plan`): the jobs that train a missing source net first (with joblib, in
parallel up to `n_jobs`), then those that extract a missing (source, target) pair, then every other job as soon as
what it needs is in the cache. So no joblib worker holds a core while it waits for another's cache lock, and a
source net whose training failed fails the jobs that need it (with the reason) instead of being retrained by each.
Results come back in the sweep's order. `hydra.launcher.stage_scheduling=false`, an Optuna search or (joblib)
another backend than loky run the jobs in the sweep's order, as Hydra's launchers do.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from hydra_plugins.transferfactors_plugins.staged import StagedLaunch
from src.sweep_plan import after_group, train_group_first
from src.patching import Guard

log = logging.getLogger(__name__)
# The thread pools a worker's libraries start (as joblib's loky backend limits them: cores / n_jobs each).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def group_configs(plan, num: int) -> list | None:
    """The configs of the replicate group job `num` trains first (each member's net as the first job that uses it
    configures it), or None."""
    group = plan.group(plan.job(num))
    return [plan.job(plan.units[u].jobs[0]).cfg for u in group] or None


def _run_planned(launcher: StagedLaunch, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, start,
                 n_workers: int, how: str) -> list[JobReturn]:
    """Run a planned batch on `n_workers`: `start(num, overrides, cfg, group)` returns a future (or a finished
    JobReturn when it runs the job in this process); `group`: the configs of the replicate group the job trains
    first (None: none). Returns the JobReturns in the batch's order."""
    from src.sweep_plan import LocalSchedule

    cfgs = launcher.compose_batch(job_overrides, initial_job_idx)
    plan = launcher.make_plan(cfgs)
    log.info("Launching %d jobs %s, in the order of the sweep's plan", len(cfgs), how)
    by_num = {int(c.hydra.job.num): c for c in cfgs}
    overrides = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
    schedule = LocalSchedule(plan)
    returns: dict[int, JobReturn] = {}
    running: dict[Any, int] = {}

    def ended(num: int, ret: JobReturn) -> None:
        returns[num] = ret
        for dropped, reason in schedule.finished(num):
            returns[dropped] = launcher.record_not_run(by_num[dropped], reason)

    while not schedule.exhausted() or running:
        while len(running) < n_workers and (num := schedule.next()) is not None:
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides[num])))
            started = start(num, overrides[num], by_num[num], group_configs(plan, num))
            if isinstance(started, JobReturn):
                ended(num, started)
            else:
                running[started] = num
        if not running:
            if schedule.exhausted():
                break
            raise RuntimeError("sweep plan: no job can start and none is running (a dependency cycle)")
        finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in finished:
            ended(running.pop(future), future.result())
    return [returns[int(c.hydra.job.num)] for c in cfgs]


def _guard(package: str) -> Guard:
    return Guard(f"staged_{package.split('-')[1]}", package, ("1.4.0rc3",),
                 "the launcher's own order (stage scheduling off)")


# These launchers subclass Hydra's BasicLauncher and call the joblib plugin's private `_core` (internals): the planned
# path runs only on a version it was tested against; `TRANSFER_PATCH_STAGED_CORE=0` / `TRANSFER_PATCH_STAGED_JOBLIB=0`
# turn it off, and the stock launcher's path runs instead.
GUARDS = {"core": _guard("hydra-core"), "joblib": _guard("hydra-joblib-launcher")}


class StagedBasicLauncher(StagedLaunch, BasicLauncher):
    guards = (GUARDS["core"],)

    def __init__(self, stage_scheduling: bool = True) -> None:
        super().__init__()
        self.stage_scheduling = stage_scheduling

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not self.planned():
            return super().launch(job_overrides, initial_job_idx)
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        logging_cfg = (self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configure_log(*logging_cfg, execution_whitelist=self.hydra_context.execution_whitelist)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

        def start(num: int, overrides: list[str], cfg, group) -> JobReturn:
            train_group_first(group)
            ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=cfg,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            configure_log(*logging_cfg, execution_whitelist=self.hydra_context.execution_whitelist)
            return ret

        return _run_planned(self, job_overrides, initial_job_idx, start, 1, "locally")


class StagedJoblibLauncher(StagedLaunch, JoblibLauncher):
    guards = (GUARDS["core"], GUARDS["joblib"])

    def __init__(self, stage_scheduling: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage_scheduling = stage_scheduling

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.hydra_joblib_launcher._core import execute_job, process_joblib_cfg
        from joblib import effective_n_jobs
        from joblib.externals.loky import get_reusable_executor

        if not self.planned():
            return super().launch(job_overrides, initial_job_idx)
        params = dict(self.joblib)
        process_joblib_cfg(params)
        if params["backend"] != "loky" or params.get("require") == "sharedmem":
            log.info("stage scheduling runs on joblib's loky backend; backend=%s runs the jobs in the sweep's order",
                     params["backend"])
            return super().launch(job_overrides, initial_job_idx)
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose,
                      execution_whitelist=getattr(self.hydra_context, "execution_whitelist", None))
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        n_workers = max(1, min(effective_n_jobs(params.get("n_jobs")), len(job_overrides)))
        inner = params.get("inner_max_num_threads")
        env = {var: str(inner if inner is not None else os.environ.get(var, max(1, (os.cpu_count() or 1) // n_workers)))
               for var in THREAD_VARS}
        executor = get_reusable_executor(max_workers=n_workers, env=env)
        state = Singleton.get_state()

        def start(num: int, overrides: list[str], cfg, group):  # the worker composes the job's config itself
            args = (num, overrides, self.hydra_context, self.config, self.task_function, 0, state, False)
            if group is None:
                return executor.submit(execute_job, *args)
            return executor.submit(after_group, group, execute_job, *args)

        return _run_planned(self, job_overrides, initial_job_idx, start, n_workers,
                            f"on {n_workers} joblib (loky) workers into {self.config.hydra.sweep.dir}")


@dataclass
class StagedBasicLauncherConf:
    _target_: str = "hydra_plugins.transferfactors_plugins.local_launchers.StagedBasicLauncher"
    # Run a grid sweep in the order of its plan (src/sweep_plan.py); false: in the sweep's order.
    stage_scheduling: bool = True


@dataclass
class StagedJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.transferfactors_plugins.local_launchers.StagedJoblibLauncher"
    stage_scheduling: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="staged_basic", node=StagedBasicLauncherConf,
                             provider="transferfactors")
ConfigStore.instance().store(group="hydra/launcher", name="staged_joblib", node=StagedJoblibLauncherConf,
                             provider="transferfactors")
