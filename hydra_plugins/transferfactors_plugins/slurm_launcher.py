"""The SLURM launcher of `hydra/launcher=slurm`: hydra-submitit-launcher's, plus stage-aware scheduling and failure
isolation for jobs that SLURM itself ends.

Stage-aware scheduling (`stage_scheduling: true`, a grid sweep; `src.sweep_plan`): submitted as the flat grid, the
array tasks that share a missing source net would start together, one would train it and the others would hold
their allocations (GPUs) while they wait on its cache lock. Instead:
  1. one *source job* per missing source net (an array of them), with its own resources
     (`stage_resources.source`: e.g. a longer time limit; requeued on preemption and at its time limit, and the
     training resumes from its last epoch: `src.train.source`);
  2. per source net, an array of the jobs that build a missing (source, target) extraction, `--dependency=afterok:`
     on exactly that source job (jobs whose source is cached: no dependency);
  3. per source net, an array of the other jobs, after those (`afterany`: a failed extraction is retried by the
     next job that needs it) - `extract_first: false` submits 2 and 3 as one array.
Jobs already done (result.json ok with this config) are not submitted. A source job that fails (or is cancelled, or
hits its time limit for good) cancels its dependents, which are recorded failed (`DependencyNeverSatisfied`,
"source job <id> failed: <state>"), and the sweep goes on; rerunning the command reruns only what is missing.

Failure isolation: submitit's launcher waits for every task's result pickle and raises for a task that has none,
so one task cancelled with `scancel`, killed by its time limit or lost with its node ended the whole sweep (and
without SLURM accounting, where `sacct` fails, it waited forever). This one polls `squeue -t all` for the states as
well, records a task that ended without a result as a failed job (`result.json` with `status: failed`, the SLURM
state and the submitit log), returns NaN to the sweeper and lets the sweep finish.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from hydra_plugins.transferfactors_plugins.staged import StagedLaunch

log = logging.getLogger(__name__)
# squeue states after which a task will not write a result (PENDING/RUNNING/... are still under way).
ENDED = {"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
         "COMPLETED", "SPECIAL_EXIT", "REVOKED"}
# Ended states SLURM itself may follow with a requeue (PreemptMode=REQUEUE, a requeued lost node): given the grace.
MAY_RETURN = {"PREEMPTED", "NODE_FAIL"}
POLL_S = 2.0
# A task gone from squeue whose result pickle is not visible yet (a slow shared filesystem) gets this long.
RESULT_GRACE_S = 30.0
OWN_KEYS = {"stage_scheduling", "extract_first", "stage_resources"}  # ours, not submitit's
INIT_KEYS = {"max_num_timeout", "python"}  # submitit's executor takes these when it is created


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} for the tasks SLURM still knows about (finished ones stay for MinJobAge), by array
    job or task id; None when the controller did not answer (busy, restarting), so that no task is taken for gone
    on a failed query."""
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(job_ids)],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0 and "Invalid job id" not in r.stderr:
        log.warning("squeue failed (%s); retrying", r.stderr.strip()[-200:])
        return None
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            out[parts[0].strip()] = (parts[1].strip(), parts[2].strip())
    return out


class SourceJob:
    """A planned sweep's source job: trains one source net (and its val features) into the shared cache, or a
    replicate group's nets together.

    Checkpointable for submitit: on preemption or at its time limit (`signal_delay_s` before it) the job is
    requeued, and the rerun resumes the training from the cache's resume dir (its last complete epoch)."""

    def __call__(self, cfg: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
        from omegaconf import OmegaConf

        from src.check import validate
        from src.experiment import build_source, build_source_group

        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        if isinstance(cfg, list):  # a replicate group: its nets train together (src.train.group)
            return build_source_group([OmegaConf.create(c) for c in cfg])
        conf = OmegaConf.create(cfg)
        return build_source(conf, validate(conf))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass
class _Array:
    """One submission: tasks (job nums) or source jobs (unit ids) with one dependency."""

    name: str
    members: list[Any]
    source: str | None = None  # the unit id of the missing source net its tasks need (None: cached or none)
    after_array: str | None = None  # the name of the array it runs after (afterany)
    jobs: list[Any] = field(default_factory=list)  # submitit jobs, once submitted

    @property
    def array_id(self) -> str | None:
        return str(self.jobs[0].job_id).split("_")[0] if self.jobs else None


class IsolatingSlurmLauncher(StagedLaunch, SlurmLauncher):
    def __init__(self, stage_scheduling: bool = True, extract_first: bool = True,
                 stage_resources: Any = None, **params: Any) -> None:
        super().__init__(**params)
        self.stage_scheduling = stage_scheduling
        self.extract_first = extract_first
        resources = OmegaConf.to_container(stage_resources, resolve=True) if OmegaConf.is_config(stage_resources) \
            else dict(stage_resources or {})
        self.stage_resources = {k: dict(v or {}) for k, v in resources.items()}
        for stage, values in self.stage_resources.items():
            unknown = sorted(set(values) - set(self.params) - INIT_KEYS)
            if stage != "source" or unknown:
                from src.errors import ConfigError

                what = f"stage_resources.{stage}" if stage != "source" else f"stage_resources.source.{unknown[0]}"
                raise ConfigError(f"hydra.launcher.{what} is not a launcher setting; valid: stage_resources.source."
                                  f"<{', '.join(sorted(set(self.params) | INIT_KEYS))}>")

    # --- executors ---------------------------------------------------------------------------------------------

    def _executor(self, params: dict[str, Any]):
        import submitit

        executor = submitit.AutoExecutor(cluster="slurm", folder=params["submitit_folder"],
                                         **{f"slurm_{k}": v for k, v in params.items() if k in INIT_KEYS})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                      if k not in INIT_KEYS | {"submitit_folder"}})
        return executor

    def _source_params(self) -> dict[str, Any]:
        params = {**self.params, **self.stage_resources.get("source", {})}
        params["name"] = f"{self.params.get('name', 'job')}-source"
        return params

    # --- launch ------------------------------------------------------------------------------------------------

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if not self.planned():
            sweep_dir.mkdir(parents=True, exist_ok=True)
            log.info("SLURM sweep output dir: %s", sweep_dir)
            nums = [initial_job_idx + i for i in range(len(job_overrides))]
            returns = self._run([_Array("tasks", nums)], [], dict(zip(nums, map(list, job_overrides))), None)
            return [returns[n] for n in nums]
        cfgs = self.compose_batch(job_overrides, initial_job_idx)
        plan = self.make_plan(cfgs)  # --plan ends here
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("SLURM sweep output dir: %s", sweep_dir)
        sources, arrays = self._layout(plan)
        by_num = {int(c.hydra.job.num): c for c in cfgs}
        returns = {j.num: self._done(by_num[j.num]) for j in plan.jobs if j.state == "done"}
        if returns:
            log.info("%d jobs already done with this config: not submitted", len(returns))
        overrides = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
        returns.update(self._run(arrays, sources, overrides, plan, by_num))
        return [returns[int(c.hydra.job.num)] for c in cfgs]

    def _layout(self, plan) -> tuple[list[Any], list[_Array]]:
        """(missing source units, task arrays in submission order) of a plan."""
        sources = plan.missing("source")
        groups: dict[tuple[str | None, int], list[int]] = {}
        for job in plan.jobs:
            if job.state == "done":
                continue
            src = job.source if job.source and not plan.units[job.source].cached else None
            second = self.extract_first and job.extract and not plan.units[job.extract].cached \
                and plan.units[job.extract].builder != job.num
            groups.setdefault((src, 2 if second else 1), []).append(job.num)
        arrays = []
        for i, src in enumerate([None] + [u.id for u in sources]):
            name = "cached sources" if src is None else f"source {i}"
            first, second = groups.get((src, 1), []), groups.get((src, 2), [])
            if first:
                arrays.append(_Array(f"{name}: extractions" if second else name, first, source=src))
            if second:
                arrays.append(_Array(f"{name}: the rest", second, source=src,
                                     after_array=arrays[-1].name if first else None))
        return sources, arrays

    def plan_lines(self, plan) -> list[str]:
        sources, arrays = self._layout(plan)
        res = self._source_params()
        lines = []
        if sources:
            requeue = res.get("max_num_timeout", 0)
            n_jobs = len({u.builder for u in sources})  # a replicate group is one job
            grouped = f" ({len(sources)} nets, replicates grouped)" if n_jobs < len(sources) else ""
            lines.append(f"SLURM: {n_jobs} source job(s){grouped} first (timeout_min={res.get('timeout_min')}, "
                         f"gpus_per_node={res.get('gpus_per_node')}, cpus_per_task={res.get('cpus_per_task')}, "
                         f"mem_gb={res.get('mem_gb')}; requeued on preemption"
                         + (f" and up to {requeue}x at the time limit" if requeue else "")
                         + ", resuming from the last epoch)")
        for a in arrays:
            after = ["afterok its source job" if a.source else None,
                     f"afterany the array '{a.after_array}'" if a.after_array else None]
            after = [x for x in after if x]
            lines.append(f"SLURM array '{a.name}': {len(a.members)} task(s), jobs {_short(a.members)}"
                         + (f" ({', '.join(after)})" if after else " (no dependency)"))
        if len(arrays) > 1:
            lines.append(f"array_parallelism={self.params.get('array_parallelism')} applies to each array")
        return lines

    def _done(self, sweep_cfg) -> JobReturn:
        """A job already done: its earlier result, without a SLURM job (its progress line counts it)."""
        import json

        from src.main import objective
        from src.sweep_plan import job_out_dir

        out_dir = job_out_dir(sweep_cfg)
        task_cfg = OmegaConf.masked_copy(sweep_cfg, [k for k in sweep_cfg if k != "hydra"])
        prev = json.loads((out_dir / "result.json").read_text())
        ret = JobReturn(overrides=list(sweep_cfg.hydra.overrides.task), cfg=task_cfg, hydra_cfg=sweep_cfg,
                        working_dir=str(out_dir), task_name=str(sweep_cfg.hydra.job.name),
                        status=JobStatus.COMPLETED, _return_value=objective(task_cfg, prev))
        self.hydra_context.callbacks.on_job_end(config=sweep_cfg, job_return=ret)
        return ret

    def _submit(self, arrays: list[_Array], sources, overrides: dict[int, list[str]], plan) -> dict[str, Any]:
        """Submit the source jobs, then each array with its dependency; {unit id: source job}."""
        source_jobs: dict[str, Any] = {}
        if sources:
            executor = self._executor(self._source_params())
            # One source job per builder: a replicate group's nets (`src.sweep_plan`) train in one job.
            by_builder: dict[int, list[Any]] = {}
            for u in sources:
                by_builder.setdefault(u.builder, []).append(u)
            cfgs = [[OmegaConf.to_container(plan.job(u.jobs[0]).cfg, resolve=True) for u in us] if len(us) > 1
                    else OmegaConf.to_container(plan.job(us[0].builder).cfg, resolve=True)
                    for us in by_builder.values()]
            jobs = executor.map_array(SourceJob(), cfgs)
            for units, job in zip(by_builder.values(), jobs):
                for unit in units:
                    source_jobs[unit.id] = job
                    log.info("source job %s: %s (%s)%s", job.job_id, unit.label, unit.keys["source"],
                             f" in a group of {len(units)}" if len(units) > 1 else "")
        executor = self._executor(self.params)
        state = Singleton.get_state()
        submitted: dict[str, _Array] = {}
        for a in arrays:
            deps = []
            if a.source:
                deps.append(f"afterok:{source_jobs[a.source].job_id}")
            if a.after_array:
                deps.append(f"afterany:{submitted[a.after_array].array_id}")
            executor.update_parameters(slurm_dependency=",".join(deps) if deps else None)
            params = [(overrides[n], "hydra.sweep.dir", n, f"job_id_for_{n}", state) for n in a.members]
            for n in a.members:
                log.info("\t#%d : %s", n, " ".join(filter_overrides(overrides[n])))
            a.jobs = executor.map_array(self, *zip(*params))
            submitted[a.name] = a
            log.info("SLURM array %s (%s): %d task(s)%s", a.array_id, a.name, len(a.members),
                     f", --dependency={','.join(deps)}" if deps else "")
        return source_jobs

    def _run(self, arrays: list[_Array], sources, overrides: dict[int, list[str]], plan,
             by_num: dict | None = None) -> dict[int, JobReturn]:
        source_jobs = self._submit(arrays, sources, overrides, plan)
        self._write_jobs(arrays, source_jobs, plan)
        return self._wait(arrays, source_jobs, overrides, plan, by_num or {})

    def _write_jobs(self, arrays: list[_Array], source_jobs: dict[str, Any], plan) -> None:
        """`<sweep dir>/slurm.json`: what was submitted (source jobs and arrays with their SLURM ids, jobs and
        dependencies), to find a sweep's jobs in squeue or cancel a source job with its dependents."""
        import json

        from src.cache import atomic_write_text

        record = {
            "source_jobs": [{"job_id": str(job.job_id), "source": plan.units[uid].keys["source"],
                             "label": plan.units[uid].label, "jobs": plan.units[uid].jobs}
                            for uid, job in source_jobs.items()],
            "arrays": [{"array_id": a.array_id, "name": a.name, "jobs": a.members,
                        "task_ids": [str(j.job_id) for j in a.jobs],
                        "after_source_job": str(source_jobs[a.source].job_id) if a.source else None,
                        "after_array": next((b.array_id for b in arrays if b.name == a.after_array), None)}
                       for a in arrays],
        }
        atomic_write_text(Path(str(self.config.hydra.sweep.dir)) / "slurm.json", json.dumps(record, indent=1))

    # --- waiting -----------------------------------------------------------------------------------------------

    def _wait(self, arrays: list[_Array], source_jobs: dict[str, Any], overrides: dict[int, list[str]], plan,
              by_num: dict) -> dict[int, JobReturn]:
        """Wait until every task has a result, has ended without one, or cannot run because its source job failed;
        returns each task's JobReturn (recording those without a result)."""
        tasks = {str(j.job_id): (n, j) for a in arrays for n, j in zip(a.members, a.jobs)}
        sources: dict[str, tuple[list[str], Any]] = {}  # a replicate group's job trains several units' nets
        for uid, j in source_jobs.items():
            sources.setdefault(str(j.job_id), ([], j))[0].append(uid)
        pending = set(tasks) | set(sources)
        ended: dict[str, str] = {}  # task id -> why it has no result
        gone_since: dict[str, float] = {}
        array_ids = sorted({jid.split("_")[0] for jid in pending})
        returns: dict[int, JobReturn] = {}

        def source_failed(uids: list[str], jid: str, state: str) -> None:
            why = f"source job {jid} failed: {state}"
            log.error("%s (%s); its dependent tasks are cancelled and recorded failed", why,
                      "; ".join(plan.units[uid].label if plan else uid for uid in uids))
            mine = [a for a in arrays if a.source in uids]
            for a in reversed(mine):  # the later arrays first, so none starts once its predecessor is cancelled
                subprocess.run(["scancel", str(a.array_id)], capture_output=True, timeout=60)
            for a in mine:
                for n, j in zip(a.members, a.jobs):
                    if str(j.job_id) in pending and not j.paths.result_pickle.exists():
                        pending.discard(str(j.job_id))
                        returns[n] = self.record_not_run(self._sweep_cfg(n, overrides, by_num), why)

        while pending:
            for jid in [jid for jid in pending if (tasks.get(jid) or sources[jid])[1].paths.result_pickle.exists()]:
                pending.discard(jid)
                if jid in sources:
                    uids, job = sources[jid]
                    try:
                        job.results()
                    except Exception as e:  # noqa: BLE001  (the training raised: its message says why)
                        source_failed(uids, jid, f"FAILED ({type(e).__name__}: {_last_line(e)})")
            if not pending:
                break
            states = slurm_states(array_ids)
            if states is None:
                time.sleep(POLL_S)
                continue
            now = time.monotonic()
            for jid in list(pending):
                if jid not in pending:  # dropped by a source failure in this pass
                    continue
                state, reason = states.get(jid, ("UNKNOWN (no longer in squeue)", ""))
                state = state.split()[0]
                if jid in tasks and state == "PENDING" and reason == "DependencyNeverSatisfied":
                    gone_since.setdefault(jid, now)  # its source job's end is being looked at: give it a moment
                    if now - gone_since[jid] >= RESULT_GRACE_S:
                        pending.discard(jid)
                        subprocess.run(["scancel", jid], capture_output=True, timeout=60)
                        ended[jid] = "its dependency can never be satisfied (DependencyNeverSatisfied)"
                    continue
                if state in ENDED or jid not in states:
                    gone_since.setdefault(jid, now)
                    grace = RESULT_GRACE_S if jid not in states or state in MAY_RETURN | {"COMPLETED"} else 0
                    if now - gone_since[jid] >= grace:
                        pending.discard(jid)
                        full = states.get(jid, ("UNKNOWN (no longer in squeue)", ""))[0]
                        if jid in sources:
                            source_failed(sources[jid][0], jid, full)
                        else:
                            ended[jid] = full
                else:
                    gone_since.pop(jid, None)  # back to running/pending (a requeue)
            time.sleep(POLL_S)
        for jid, (num, job) in tasks.items():
            if num in returns:
                continue
            if jid not in ended:
                try:
                    returns[num] = job.results()[0]
                    continue
                except Exception as e:  # noqa: BLE001  (the task's Python process died, e.g. an import error)
                    ended[jid] = f"FAILED ({type(e).__name__}: {_last_line(e)})"
            log.error("job %d (SLURM %s) ended without a result: %s", num, jid, ended[jid])
            returns[num] = self.record_not_run(self._sweep_cfg(num, overrides, by_num),
                                               f"SLURM job {jid} ended without a result: {ended[jid]}",
                                               error_type="JobEnded", log_path=str(job.paths.stderr))
        return returns

    def _sweep_cfg(self, num: int, overrides: dict[int, list[str]], by_num: dict):
        """A job's composed config (the plan's, or composed again for an unplanned sweep)."""
        from omegaconf import open_dict

        if num in by_num:
            return by_num[num]
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides[num])
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = num
        return cfg


def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _short(nums: list[int]) -> str:
    from src.sweep_plan import _ranges

    return _ranges(nums)


@dataclass
class StagedSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.transferfactors_plugins.slurm_launcher.IsolatingSlurmLauncher"
    # A grid sweep: source jobs first, then dependent arrays (see the module docstring); false: one flat array.
    stage_scheduling: bool = True
    # Per source, the jobs that build a missing extraction in an array before the rest (no job waits on its lock).
    extract_first: bool = True
    # The source jobs' own settings: any launcher key (timeout_min, gpus_per_node, max_num_timeout, ...).
    stage_resources: dict[str, Any] = field(default_factory=lambda: {"source": {}})


ConfigStore.instance().store(group="hydra/launcher", name="staged_slurm", node=StagedSlurmQueueConf,
                             provider="transferfactors")
