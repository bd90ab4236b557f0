"""Cluster scale: what a sweep's allocations spend waiting on cache locks with and without stage scheduling, the
SLURM launcher's per-task overhead on an array of cached jobs, and a shared Optuna study under load, on a real
single-node SLURM cluster (slurmctld/slurmd/munge on loopback) and a real PostgreSQL 15 server, both started by the
script (tests/services/) and stopped at its end.

- **Lock waiting**: a grid of 4 source nets (alexnet and vgg, seeds 0 and 1, each a ~20 s training) x 5 targets
  (target.data.seed) x 2 target tasks x 5 layers = 200 jobs, 2 tasks at a time (the node's 2 CPUs, one per task),
  run twice from an empty cache: the flat array (`hydra.launcher.stage_scheduling=false`: what a stock submitit
  sweep does) and the staged one (source jobs first, arrays with `afterok` dependencies). Allocation-seconds are
  each task's process start to its end (result.json `clock`) plus the source jobs' trainings (`.timings/`); the
  seconds waiting on a lock are the jobs' `timings_s.lock_wait`. Ratio: waiting / all allocation-seconds.
  `python -m benchmarks.cluster_scale --summarize DIR` recomputes the rows from a run's kept directory.
- **Scheduler overhead**: an array of cached jobs (every stage a cache hit: the lock-wait grid times several values
  of the probe's `classifier.patience`, in a new sweep dir). Submission: from the command's start to the array's id in
  `slurm.json` (composition, plan, pickling every task). Per task: SLURM start to the job's own start (the
  interpreter, submitit unpickling, Hydra's job set-up; `clock.process_start`/`clock.start` in result.json), the
  job's imports (torch, Lightning), and its own work. With `--array-tasks` above `--run-tasks`, the array is
  submitted whole (the submission figure is that of the full array) and cancelled once `--run-tasks` tasks have
  ended: the per-task figures are those tasks'.
- **Shared study**: `python -m src.search.workers 8` x 25 trials on one PostgreSQL study (a search space of one
  tiny source net), one extra worker killed with SIGKILL in the middle of a trial and a late worker started after
  the grace period that fails it (heartbeat failover): trials lost or duplicated, trials per minute.

    python -m benchmarks.cluster_scale [--smoke] [--only lock,overhead,study]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from benchmarks.common import REPO, parser, write

SOURCE = ["width=tiny", "source.num_classes=10", "source.images_per_class=100", "source.val_per_class=10",
          "trainer.optim.batch_size=64", "trainer.num_threads=1"]
TARGET = ["target.data.num_classes=4", "target.data.train_per_class=12", "target.data.val_per_class=6",
          "target.data.test_per_class=12"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.array_parallelism=2",
         "hydra.launcher.stage_resources.source.timeout_min=60", "~hydra.callbacks.summary"]


def lock_grid(smoke: bool) -> list[str]:
    if smoke:
        return ["arch=alexnet,vgg", "layer=fc6,fc7", "source.epochs=2"]
    return ["arch=alexnet,vgg", "seed=0,1", "target=synth_objects_new,synth_scenes", "target.data.seed=0,1,2,3,4",
            "layer=conv4,conv5,conv_last,fc6,fc7", "source.epochs=8"]


class SqueuePoller:
    """Every job's latest (start, end, state) as `squeue` shows them (finished jobs stay MinJobAge seconds)."""

    def __init__(self, cluster, every: float = 1.0):
        self.cluster, self.every, self.jobs = cluster, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        deadline = time.time() + 120  # a task's result is written before its process (and allocation) ends
        self.poll()
        while time.time() < deadline and any(state in ("RUNNING", "COMPLETING") for _, _, state in self.jobs.values()):
            time.sleep(1)
            self.poll()

    def poll(self) -> None:
        r = self.cluster.run("squeue", "-h", "-t", "all", "-o", "%i|%S|%e|%T", check=False, timeout=30)
        for line in r.stdout.splitlines():
            jid, start, end, state = line.strip().split("|")
            self.jobs[jid] = (start, end, state)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def allocation_seconds(self, ids: set[str] | None = None) -> dict[str, float]:
        """Seconds each ended job held its allocation (SLURM's start to end; 1 s resolution)."""
        out = {}
        for jid, (start, end, state) in self.jobs.items():
            if ids is not None and jid not in ids or "[" in jid or state in ("PENDING", "RUNNING", "COMPLETING") \
                    or start in ("N/A", "None"):
                continue
            out[jid] = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        return out


def run_sweep(args: list[str], cluster, env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as out:
        r = subprocess.run([sys.executable, "-m", "src.main", "-m", *args], cwd=REPO, env={**env, **cluster.env()},
                           stdout=out, stderr=subprocess.STDOUT, text=True, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"sweep failed ({log}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]


def lock_wait(cluster, work: Path, staged: bool, smoke: bool) -> dict:
    sweep, cache = work / f"lock-{'staged' if staged else 'flat'}", work / f"cache-{'staged' if staged else 'flat'}"
    env = {**os.environ, "TRANSFER_CACHE_DIR": str(cache)}
    args = [*lock_grid(smoke), *SOURCE, *TARGET, *SLURM, f"hydra.sweep.dir={sweep}",
            f"hydra.launcher.stage_scheduling={str(staged).lower()}"]
    with SqueuePoller(cluster) as poller:
        wall = run_sweep(args, cluster, env, work / f"lock-{'staged' if staged else 'flat'}.log")
    return {"scheduling": "staged (sources first)" if staged else "flat array", "wall_s": round(wall, 1),
            **summarize(sweep, cache, staged), "slurm_allocation_s": round(sum(poller.allocation_seconds().values()))}


def summarize(sweep: Path, cache: Path, staged: bool) -> dict:
    """Allocation-seconds from what the jobs recorded: each task's process start to its end (`clock`), plus, for a
    staged sweep, each source job's training (`.timings/`; its own start-up is left out, which can only raise the
    share). squeue's start and end times (`slurm_allocation_s`, 1 s resolution, array records included) are kept
    beside them as a cross-check."""
    from src.cache import Store

    res = results(sweep)
    assert all(r["status"] == "ok" for r in res), Counter(r["status"] for r in res)
    waited = sum(r["timings_s"].get("lock_wait", 0.0) for r in res)
    held = sum(r["clock"]["end"] - r["clock"]["process_start"] for r in res)
    if staged:
        held += sum(b["seconds"] for b in Store(cache).timings("source"))
    return {"jobs": len(res), "sources_trained": len({r["keys"]["source"] for r in res}),
            "allocation_s": round(held, 1), "lock_wait_s": round(waited, 1),
            "lock_wait_share": round(waited / held, 4) if held else None,
            "jobs_that_waited": sum(1 for r in res if r["timings_s"].get("lock_wait", 0) > 0),
            "task_imports_s_median": round(statistics.median(r["clock"]["imported"] - r["clock"]["start"]
                                                             for r in res if r["clock"].get("imported")), 1)}


def overhead(cluster, work: Path, array_tasks: int, run_tasks: int, smoke: bool) -> dict:
    """An array of cached jobs: the lock-wait grid's stages with other probe settings, so every stage is a hit."""
    cache = work / "cache-staged"
    env = {**os.environ, "TRANSFER_CACHE_DIR": str(cache)}
    sweep = work / "overhead"
    grid = lock_grid(smoke)
    reps = max(1, -(-array_tasks // (4 if smoke else 200)))  # probe settings that multiply the cached grid
    probe_axes = ["classifier.patience=" + ",".join(str(i) for i in range(1, reps + 1))]
    args = [*grid, *probe_axes, *SOURCE, *TARGET, *SLURM, f"hydra.sweep.dir={sweep}",
            "hydra.launcher.array_parallelism=2"]
    log = work / "overhead.log"
    t0 = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "src.main", "-m", *args], cwd=REPO,
                                env={**env, **cluster.env()}, stdout=out, stderr=subprocess.STDOUT, text=True)
    submitted_at = None
    deadline = time.time() + 7200
    while proc.poll() is None and time.time() < deadline:
        if submitted_at is None and (sweep / "slurm.json").exists():
            submitted_at = time.time()
        done = list(sweep.glob("*/result.json"))
        if submitted_at is not None and len(done) >= run_tasks:
            break
        time.sleep(0.2)
    cancelled = False
    if proc.poll() is None:  # the tasks asked for have ended: cancel the rest of the array
        slurm = json.loads((sweep / "slurm.json").read_text())
        cluster.run("scancel", *[a["array_id"] for a in slurm["arrays"]], check=False)
        cancelled = True
    proc.wait(timeout=1800)
    slurm = json.loads((sweep / "slurm.json").read_text())
    n_array = sum(len(a["jobs"]) for a in slurm["arrays"])
    ran = [r for r in results(sweep) if r["status"] == "ok" and r.get("clock")]
    assert ran, log.read_text()[-3000:]
    assert not any(r["cache"].get("source_hit") is False for r in ran), "a stage was not cached"
    start_overheads = [r["clock"]["start"] - r["clock"]["process_start"] for r in ran]
    imports = [r["clock"]["imported"] - r["clock"]["start"] for r in ran if r["clock"].get("imported")]
    own = [r["clock"]["end"] - (r["clock"].get("imported") or r["clock"]["start"]) for r in ran]
    first, last = min(r["clock"]["process_start"] for r in ran), max(r["clock"]["end"] for r in ran)
    per_worker = (last - first) * 2 / len(ran)  # 2 tasks at a time
    return {"array_tasks": n_array, "tasks_measured": len(ran), "cancelled_rest": cancelled,
            "submission_s": round((submitted_at or time.time()) - t0, 1),
            "process_to_job_s_median": round(statistics.median(start_overheads), 2),
            "imports_s_median": round(statistics.median(imports), 2) if imports else None,
            "job_work_s_median": round(statistics.median(own), 2),
            "task_slot_s": round(per_worker, 2),
            "wall_over_work": round(per_worker / statistics.median(own), 2)}


def shared_study(work: Path, workers: int, trials: int, smoke: bool) -> dict:
    from tests.services.postgres import PostgresServer

    space = ["hydra.sweeper.params.arch=alexnet", "hydra.sweeper.params.width=tiny",
             "hydra.sweeper.params.dimred=none", "hydra.sweeper.params.layer='choice(fc6,fc7,conv5,conv4)'"]
    tiny = ["source.num_classes=4", "source.images_per_class=40", "source.val_per_class=10", "source.epochs=2",
            "trainer.optim.batch_size=32", "trainer.num_threads=1", *TARGET]
    heartbeat = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=5"]
    server = PostgresServer().start()
    try:
        url = server.create_database("bench")
        env = {**os.environ, **server.env(), "TRANSFER_CACHE_DIR": str(work / "cache-study")}
        common = ["search=factors_tpe", f"hydra.sweeper.storage={url}", *heartbeat, *space, *tiny]
        # The shared source net first, so that the workers measure the search, not one training.
        subprocess.run([sys.executable, "-m", "src.main", *tiny, "width=tiny", "layer=fc6",
                        f"hydra.run.dir={work / 'warm'}"], cwd=REPO, env=env, check=True, capture_output=True)
        victim = subprocess.Popen([sys.executable, "-m", "src.main", *common, "hydra.sweeper.n_trials=1000",
                                   f"hydra.sweep.dir={work / 'victim'}", "hydra.sweeper.sampler.seed=99"],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        pool = subprocess.Popen([sys.executable, "-m", "src.search.workers", str(workers), *common,
                                 f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={work / 'workers'}"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 600
        while proc_alive(victim) and time.time() < deadline:  # kill the victim in a trial, after its first ended
            jobs = sorted((work / "victim").glob("[0-9]*"), key=lambda p: int(p.name))
            if len(jobs) >= 2 and not (jobs[-1] / "result.json").exists():
                os.kill(victim.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        if proc_alive(victim):
            victim.kill()
        victim.wait()
        out, _ = pool.communicate(timeout=7200)
        wall = time.perf_counter() - t0
        if pool.returncode != 0:
            raise RuntimeError(f"workers failed:\n{out[-3000:]}")
        time.sleep(6)  # past the grace period: the next worker fails the victim's trial
        subprocess.run([sys.executable, "-m", "src.main", *common, "hydra.sweeper.n_trials=1",
                        f"hydra.sweep.dir={work / 'late'}"], cwd=REPO, env=env, check=True, capture_output=True)
        import optuna

        for key, value in server.env().items():
            os.environ[key] = value
        study = optuna.load_study(study_name="factors_tpe-synth_objects_new", storage=url)
        states = Counter(t.state.name for t in study.trials)
        numbers = [t.number for t in study.trials]
        victim_done = len(list((work / "victim").glob("*/result.json")))
        expected = workers * trials + victim_done + 1 + 1  # + the victim's killed trial + the late worker's
        return {"workers": workers, "trials_each": trials, "trials_in_study": len(numbers),
                "expected": expected, "lost": expected - len(set(numbers)),
                "duplicated": len(numbers) - len(set(numbers)), "failed_by_heartbeat": states.get("FAIL", 0),
                "running_left": states.get("RUNNING", 0), "wall_s": round(wall, 1),
                "trials_per_min": round(workers * trials / wall * 60, 1)}
    finally:
        server.stop()


def proc_alive(p: subprocess.Popen) -> bool:
    return p.poll() is None


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--only", default="lock,overhead,study")
    ap.add_argument("--array-tasks", type=int, default=1000)
    ap.add_argument("--run-tasks", type=int, default=200)
    ap.add_argument("--summarize", metavar="DIR", help="recompute the lock rows from a kept run's directory")
    args = ap.parse_args(argv)
    parts = set() if args.summarize else set(args.only.split(","))
    work = Path(args.summarize or tempfile.mkdtemp(prefix="cluster-bench-"))
    rows, extra = [], {}
    if args.summarize:  # the same data, summarized again: wall and squeue figures and the other parts are kept
        from benchmarks.common import RESULTS

        old = json.loads((RESULTS / f"cluster_scale{'.smoke' if args.smoke else ''}.json").read_text())
        kept = {r["scheduling"]: r for r in old["rows"]}
        for staged in (False, True):
            name = "staged (sources first)" if staged else "flat array"
            tag = "staged" if staged else "flat"
            row = summarize(work / f"lock-{tag}", work / f"cache-{tag}", staged)
            rows.append({"scheduling": name, "wall_s": kept[name]["wall_s"], **row,
                         "slurm_allocation_s": kept[name].get("slurm_allocation_s", kept[name].get("allocation_s"))})
        extra = {k: old[k] for k in ("overhead", "shared_study") if k in old}
    if parts & {"lock", "overhead"}:
        from tests.services.slurm import SlurmCluster

        cluster = SlurmCluster().start()
        try:
            if "lock" in parts:
                flat = lock_wait(cluster, work, staged=False, smoke=args.smoke)
                staged = lock_wait(cluster, work, staged=True, smoke=args.smoke)
                rows += [flat, staged]
            if "overhead" in parts:
                if "lock" not in parts:  # fill the cache the cached array reads
                    lock_wait(cluster, work, staged=True, smoke=args.smoke)
                extra["overhead"] = overhead(cluster, work, 16 if args.smoke else args.array_tasks,
                                             8 if args.smoke else args.run_tasks, args.smoke)
        finally:
            cluster.stop()
    if "study" in parts:
        extra["shared_study"] = shared_study(work, 2 if args.smoke else 8, 2 if args.smoke else 25, args.smoke)
    staged_row = next((r for r in rows if r["scheduling"].startswith("staged")), None)
    flat_row = next((r for r in rows if r["scheduling"] == "flat array"), None)
    ratio = staged_row["lock_wait_share"] if staged_row else None
    return write("cluster_scale", "Cluster scale: allocation-seconds waiting on cache locks, staged sweep "
                 "(flat array: " + (f"{flat_row['lock_wait_share']:.1%}" if flat_row else "n/a") + ")", rows,
                 ratio, "<= 0.05 of allocation-seconds", None if ratio is None else ratio <= 0.05, args.smoke,
                 ours=f"{staged_row['lock_wait_s']} s of {staged_row['allocation_s']} s" if staged_row else "",
                 reference=f"flat: {flat_row['lock_wait_s']} s of {flat_row['allocation_s']} s" if flat_row else "",
                 **extra)


if __name__ == "__main__":
    main()
