"""The SLURM launcher of `hydra/launcher=slurm`: hydra-submitit-launcher's, plus failure isolation for jobs that
SLURM itself ends.

Submitit's launcher waits for every array task's result pickle and raises for a task that has none, so one job
cancelled with `scancel`, killed by its time limit or lost with its node ends the whole sweep (and without
SLURM accounting, where `sacct` fails, it waits forever). This one polls `squeue -t all` for the tasks' states as
well, records a task that ended without a result as a failed job (`result.json` with `status: failed`, the SLURM
state and the submitit log), returns NaN to the sweeper and lets the sweep finish. Such jobs are not requeued
(`max_num_timeout: 0`, submitit's default): rerunning the same command reruns exactly the failed and missing jobs.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)
# squeue states after which a task will not write a result (PENDING/RUNNING/... are still under way).
ENDED = {"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
         "COMPLETED", "SPECIAL_EXIT", "REVOKED"}
POLL_S = 2.0
# A task gone from squeue whose result pickle is not visible yet (a slow shared filesystem) gets this long.
RESULT_GRACE_S = 30.0


def slurm_states(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: state} for the tasks SLURM still knows about (finished ones stay for MinJobAge); None when the
    controller did not answer (busy, restarting), so that no task is taken for gone on a failed query."""
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(job_ids)],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0 and "Invalid job id" not in r.stderr:
        log.warning("squeue failed (%s); retrying", r.stderr.strip()[-200:])
        return None
    states = dict(line.split(maxsplit=1) for line in r.stdout.splitlines() if " " in line)
    return {k: v.strip() for k, v in states.items()}


class IsolatingSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        init_keys = {"max_num_timeout", "python"}
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=self.params["submitit_folder"],
            **{f"slurm_{k}": v for k, v in self.params.items() if k in init_keys},
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in self.params.items()
                                      if k not in init_keys | {"submitit_folder"}})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("SLURM sweep output dir: %s", sweep_dir)
        params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*params))
        ended = self._wait(jobs)
        return [self._job_return(job, p[0], p[2], ended.get(job.job_id)) for job, p in zip(jobs, params)]

    def _wait(self, jobs: list) -> dict[str, str]:
        """Wait until every task has a result or has ended without one; {job id: SLURM state} for the latter."""
        pending = {j.job_id: j for j in jobs}
        ended: dict[str, str] = {}
        gone_since: dict[str, float] = {}
        while pending:
            for jid in [jid for jid, j in pending.items() if j.paths.result_pickle.exists()]:
                del pending[jid]
            if not pending:
                break
            states = slurm_states(list(pending))
            if states is None:
                time.sleep(POLL_S)
                continue
            now = time.monotonic()
            for jid in list(pending):
                state = states.get(jid, "UNKNOWN (no longer in squeue)").split()[0]
                if state in ENDED or jid not in states:
                    gone_since.setdefault(jid, now)
                    if now - gone_since[jid] >= (RESULT_GRACE_S if jid not in states or state == "COMPLETED" else 0):
                        ended[jid] = states.get(jid, "UNKNOWN (no longer in squeue)")
                        del pending[jid]
            time.sleep(POLL_S)
        return ended

    def _job_return(self, job, overrides: list[str], idx: int, slurm_state: str | None) -> JobReturn:
        if slurm_state is None:
            try:
                return job.results()[0]
            except Exception as e:  # the task's Python process died (e.g. an import error on the node)
                slurm_state = f"FAILED ({type(e).__name__}: {str(e).strip().splitlines()[-1:]})"
        from src.main import objective, record_unfinished

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
        out_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        log_path = job.paths.stderr
        record_unfinished(task_cfg, out_dir, f"SLURM job {job.job_id} ended without a result: {slurm_state}",
                          log_path=str(log_path))
        log.error("job %d (SLURM %s) ended without a result: %s; recorded in %s", idx, job.job_id, slurm_state,
                  out_dir / "result.json")
        # COMPLETED with a NaN objective: what a job that fails inside Python returns (see src.main), so the
        # basic sweeper goes on and Optuna records the trial as failed.
        return JobReturn(overrides=overrides, cfg=task_cfg, hydra_cfg=cfg, working_dir=str(out_dir),
                         task_name=str(cfg.hydra.job.name), status=JobStatus.COMPLETED,
                         _return_value=objective(task_cfg, None))
