"""What this project's launchers share: a sweep's plan (`src.sweep_plan`) before its jobs run, `--plan`, and the
record of a job that cannot run because a stage it needs was not built.

A launcher plans a batch when `stage_scheduling` is on (the default) and the sweeper is Hydra's basic one (a
grid: every job is known before any runs). An Optuna search is not planned: each trial trains what it needs, and a
trial that waits for another's cache lock says so in its log and progress line (`src.cache`, `src.report.progress`).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class PlanShown(SystemExit):
    """`--plan`: the plan is printed and nothing runs (exit status 0)."""

    def __init__(self) -> None:
        super().__init__(0)


def plan_only() -> bool:
    from src.argv import PLAN_ONLY

    return os.environ.get(PLAN_ONLY) == "1"


class StagedLaunch:
    """Mixed into a Hydra launcher that has `config`, `hydra_context` and a `stage_scheduling` flag."""

    uses_composed_configs = True  # src.compose_once keeps the validation's configs for the plan
    guards: tuple = ()  # src.patching.Guard of each package whose internals this launcher's planned path uses
    stage_scheduling: bool = True
    config: DictConfig | None
    hydra_context: Any

    def planned(self) -> bool:
        """Whether this batch is planned: stage scheduling on and a grid sweeper. Under `--plan` a batch that is not
        planned prints why and exits."""
        sweeper = str(OmegaConf.select(self.config, "hydra.sweeper._target_", default="") or "")
        grid = sweeper.endswith("BasicSweeper")
        if self.stage_scheduling and not all(g.allowed() for g in self.guards):
            self.stage_scheduling = False  # the stock launcher's path, logged once by the guard
        if plan_only() and not (grid and self.stage_scheduling):
            from hydra_plugins.transferfactors_plugins.shared_study import SEARCH_NOT_PLANNED

            why = "stage scheduling is off (hydra.launcher.stage_scheduling=false)" if grid else SEARCH_NOT_PLANNED
            print(f"no plan: {why}")
            self._forget_sweep_dir()
            raise PlanShown()
        return grid and self.stage_scheduling

    def compose_batch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[DictConfig]:
        """Every job's composed config with its `hydra.job.num` (the ones the sweeper's validation composed, when
        `src.compose_once` kept them)."""
        # The imported libraries' objects live as long as the process: the full collections that composing and
        # planning hundreds of jobs set off need not walk them (see make_plan).
        gc.freeze()
        loader = self.hydra_context.config_loader
        cfgs = []
        for i, overrides in enumerate(job_overrides):
            cfg = loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.num = initial_job_idx + i
                cfg.hydra.job.id = str(initial_job_idx + i)
            cfgs.append(cfg)
        return cfgs

    def make_plan(self, cfgs: list[DictConfig]):
        """The batch's plan; under `--plan` it is printed (with `plan_lines`) and the run ends here."""
        from src import sweep_plan

        try:
            plan = sweep_plan.plan_sweep(cfgs)
        except Exception:  # refused before any job ran (a replicate group with a bad member): leave no sweep dir
            self._forget_sweep_dir(also=("progress.jsonl",))
            raise
        if plan_only():  # the dir goes first: a reader that stops early (`--plan | head`) ends the print
            self._forget_sweep_dir()
            print(sweep_plan.describe(plan, self.plan_lines(plan)))
            raise PlanShown()
        first_batch = not getattr(self, "_batches_planned", 0)
        self._batches_planned = getattr(self, "_batches_planned", 0) + 1
        if first_batch and not plan.jobs:
            from src.errors import ConfigError

            self._forget_sweep_dir(also=("progress.jsonl", "progress.jsonl.lock"))
            raise ConfigError(f"the sweep has no job: {_empty_sweeps(self.config)} expands to no value")
        if first_batch and plan.jobs and all(j.state == "invalid" for j in plan.jobs):
            # nothing would run but failure records: one line and exit 1, as a single bad run gets, not a sweep
            # dir of failed jobs, a report of none and exit 0 (with some valid jobs, the bad ones are recorded)
            from src.errors import ConfigError

            self._forget_sweep_dir(also=("progress.jsonl",))
            first = plan.jobs[0]
            rest = len(plan.jobs) - 1
            more = f" (and the other {rest} jobs fail it too)" if rest > 1 else " (and the other job fails it too)" \
                if rest else ""
            raise ConfigError(f"{first.error}{more}")
        for line in sweep_plan.describe(plan).splitlines():
            log.info(line)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_plan.write(plan, sweep_dir)
        try:  # the progress line's ETA reads this plan (the callback plans nothing itself with this launcher)
            from src.job_plan import from_sweep_plan
            from src.report.progress import take_plan

            take_plan(sweep_dir, from_sweep_plan(plan, self.config))
        except Exception as e:  # noqa: BLE001  (informational: the ETA then comes from the finished jobs)
            log.warning("sweep plan for the ETA unavailable (%s: %s)", type(e).__name__, e)
        # The plan holds every job's config (hundreds of thousands of objects) until the sweep ends; each full
        # garbage collection while the jobs run (the interpreter's own, and libraries' explicit gc.collect()) would
        # walk all of them again, for seconds over a sweep. Frozen, collections walk only what the jobs allocate.
        gc.freeze()
        return plan

    def plan_lines(self, plan) -> list[str]:
        """What this launcher adds to the printed plan (how it will run it)."""
        return []

    def _forget_sweep_dir(self, also: tuple[str, ...] = ()) -> None:
        """Hydra's sweeper saved multirun.yaml before the launcher ran (and the progress callback its header, `also`):
        a sweep dir that holds nothing else was made for this `--plan` or refused sweep and goes again."""
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if sweep_dir.resolve() == Path.cwd().resolve():  # hydra.sweep.dir=.: the user's own directory stays
            return
        if sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml", *also}:
            shutil.rmtree(sweep_dir, ignore_errors=True)
            # and the parents Hydra made for it (multirun/experiment/<study>/) while they hold nothing else
            cwd = Path.cwd().resolve()
            for parent in sweep_dir.resolve().parents:
                if parent == cwd or cwd not in parent.parents:
                    break
                try:
                    parent.rmdir()  # only an empty directory goes
                except OSError:
                    break

    def record_not_run(self, sweep_cfg: DictConfig, message: str, error_type: str = "DependencyNeverSatisfied",
                       log_path: str | None = None) -> JobReturn:
        """A job that did not run (a stage it needs was not built, or its scheduler ended it): its failed
        result.json, the sweeper's NaN, and the callbacks' `on_job_end` (the progress line counts it)."""
        from src.main import objective, record_unfinished
        from src.sweep_plan import job_out_dir

        out_dir = job_out_dir(sweep_cfg)
        task_cfg = OmegaConf.masked_copy(sweep_cfg, [k for k in sweep_cfg if k != "hydra"])
        record_unfinished(task_cfg, out_dir, message, log_path=log_path, error_type=error_type)
        sweep_cfg = OmegaConf.masked_copy(sweep_cfg, list(sweep_cfg))  # as a run job's: its output dir is set
        with open_dict(sweep_cfg):
            sweep_cfg.hydra.runtime.output_dir = str(out_dir)
        log.error("job %s not run: %s; recorded in %s", sweep_cfg.hydra.job.num, message, out_dir / "result.json")
        ret = JobReturn(overrides=list(sweep_cfg.hydra.overrides.task), cfg=task_cfg, hydra_cfg=sweep_cfg,
                        working_dir=str(out_dir), task_name=str(sweep_cfg.hydra.job.name),
                        status=JobStatus.COMPLETED, _return_value=objective(task_cfg, None))
        try:
            self.hydra_context.callbacks.on_job_end(config=sweep_cfg, job_return=ret)
        except Exception as e:  # noqa: BLE001  (a callback's failure must not lose the record)
            log.warning("on_job_end callbacks failed for job %s (%s)", sweep_cfg.hydra.job.num, e)
        return ret


def _empty_sweeps(config: DictConfig) -> str:
    """The sweep overrides that can expand to nothing, as typed (a glob selects among a config group's options: over
    a plain value such as layer it selects none), else every sweep override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    try:
        sweeps = [o for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()]
    except Exception:  # noqa: BLE001  (the line then names the command line's overrides)
        return " ".join(task) or "the sweep"
    globs = [o.input_line for o in sweeps if "glob(" in (o.input_line or "")]
    return ", ".join(globs or [o.input_line for o in sweeps]) or "the sweep"
