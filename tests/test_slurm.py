"""The project's `hydra/launcher=slurm` preset against a real single-node SLURM cluster (tests/services/slurm.py).

Sweeps are submitted with sbatch as SLURM job arrays, exactly as on a cluster, with the tiny configs; the
artifact cache (TRANSFER_CACHE_DIR) is the shared filesystem the jobs coordinate through.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from filelock import FileLock

from src.cache import Store
from src.main import execute
from tests.conftest import NO_REPORT, TINY, compose_tiny, results, run_cli, spawn_cli
from tests.services.slurm import PARTITION, SlurmCluster

# One cluster per test process (under `pytest -n`, per worker that runs one of these cases).
# Every case starts the time-limit sweep (`time_limited_sweep`) if its test process has not yet; the time-limit case
# is marked `overlapped`: the conftest runs it after the slow cases, by when the minute or more it takes has passed.
pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.usefixtures("time_limited_sweep")]

LAUNCHER = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", NO_REPORT]


@pytest.fixture(scope="session")
def slurm():
    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def time_limited_sweep(slurm, tmp_path_factory):
    """The time-limit case's sweep, started in the background by the first case of this module that a test process
    runs (the module's `usefixtures`): SLURM enforces a time limit in whole minutes and checks it every 30 s,
    so that case is mostly a wait of 60-90 s, which this way overlaps the other cases instead of adding to them.
    Its job waits on the build lock this fixture holds, in the spare CPU slot the test node offers for it
    (tests/services/slurm.py), with its own cache and sweep dir. Session-scoped: pytest-xdist interleaves this
    module's cases with other modules', which would tear a module-scoped fixture down between them. A test process
    that never runs the time-limit case kills the sweep at its end (its SLURM job ends with the cluster)."""
    from src.cache import make_key
    from src.check import validate
    from src.keys import source_payload

    root = tmp_path_factory.mktemp("time-limit")
    cache, sweep, log = root / "cache", root / "s", root / "sweep.log"
    cfg = compose_tiny("seed=7", f"paths.cache_dir={cache}")
    lock = cache / "source" / f"{make_key(source_payload(cfg, validate(cfg)))}.lock"
    lock.parent.mkdir(parents=True)
    with FileLock(str(lock)):
        proc = spawn_cli("-m", "seed=7", *LAUNCHER, "hydra.launcher.timeout_min=1",
                         "hydra.launcher.stage_scheduling=false", f"hydra.sweep.dir={sweep}", *TINY,
                         env={**slurm.env(), "TRANSFER_CACHE_DIR": str(cache)}, stdout=log, stderr="stdout")
        try:
            yield proc, log, sweep
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def source_key(make_cfg, *overrides: str) -> str:
    from src.cache import make_key
    from src.keys import source_payload
    from src.check import validate

    cfg = make_cfg(*overrides)
    return make_key(source_payload(cfg, validate(cfg)))


def interval(slurm: SlurmCluster, task: str) -> tuple[datetime, datetime]:
    start, end = slurm.run("squeue", "-h", "-t", "all", "-o", "%S %e", "-j", task).stdout.split()
    return datetime.fromisoformat(start), datetime.fromisoformat(end)


def slurm_jobs(sweep) -> dict:
    """What the launcher submitted (<sweep dir>/slurm.json): source jobs and arrays with their SLURM ids."""
    return json.loads((sweep / "slurm.json").read_text())


def start_sweep(args: list[str], slurm: SlurmCluster, log: Path):
    """`python -m src.main ARGS` in the background, its output in `log` (a pipe nobody reads would fill up)."""
    return spawn_cli(*args, env=slurm.env(), stdout=log, stderr="stdout")


def wait_for(condition, what: str, proc, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}: {log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def finish(proc, log: Path) -> None:
    proc.wait(timeout=600)
    assert proc.returncode == 0, log.read_text()[-3000:]


def epochs(n: int) -> list[str]:
    return [o for o in TINY if not o.startswith("source.epochs")] + [f"source.epochs={n}"]


@pytest.mark.empty_cache  # the source jobs build both source nets
def test_source_jobs_run_first_nobody_waits_on_a_lock_and_a_preempted_training_resumes(slurm, cache_dir, tmp_path,
                                                                                      make_cfg, monkeypatch):
    """1 source x 2 layers: the source job, then an array of the extracting job and an array of the rest (the other
    layer, which reads the extracted features); no task starts before the source job has ended, the net is trained
    once, no task waits on a cache lock. The source job is preempted (SIGUSR2, as SLURM signals a preemption) after
    its second epoch: submitit requeues it and the training resumes from its checkpoint. The resumed net's job, run
    here from a fresh cache, gives the same results (its scores equal those of a net trained without a break).
    Several nets, each with its own source job and the arrays that depend on it: the next two cases."""
    sweep = tmp_path / "slurm"
    # One source net and one target: every SLURM task is a fresh interpreter (seconds of imports), and a second net
    # or target would only repeat the same source job and pair of arrays.
    grid = ["arch=alexnet", "target=synth_objects_new", "layer=fc6,fc7"]
    tiny = epochs(12)  # long enough to be signalled mid-training
    alexnet = source_key(make_cfg, "arch=alexnet", "source.epochs=12")
    log = tmp_path / "sweep.log"
    proc = start_sweep(["-m", *grid, *LAUNCHER, "hydra.launcher.timeout_min=10",
                        "hydra.launcher.stage_resources.source.timeout_min=10", f"hydra.sweep.dir={sweep}", *tiny],
                       slurm, log)
    wait_for(lambda: (sweep / "slurm.json").exists() and
             (cache_dir / "source" / f".{alexnet}.resume" / "snapshot_2.pt").exists(), "second epoch", proc, log)
    (source_job,) = [j["job_id"] for j in slurm_jobs(sweep)["source_jobs"] if j["source"] == alexnet]
    slurm.run("scancel", "--signal=USR2", source_job)
    finish(proc, log)
    res = results(sweep)
    assert len(res) == 2 and all(x["status"] == "ok" for x in res.values()), res

    submitted = slurm_jobs(sweep)
    assert len(submitted["source_jobs"]) == 1 and len(submitted["arrays"]) == 2
    extracting, rest = sorted(submitted["arrays"], key=lambda a: a["after_array"] is not None)
    assert extracting["after_array"] is None and rest["after_array"] == extracting["array_id"]
    # Each net trained once, by its source job: every task found it cached, and none waited on a lock.
    assert sorted(r["key"] for r in Store(cache_dir).timings("source")) == sorted(j["source"] for j in
                                                                                 submitted["source_jobs"])
    assert all(x["cache"]["source_hit"] for x in res.values())
    assert [x["timings_s"]["lock_wait"] for x in res.values()] == [0] * 2
    # Every task started once its source job had ended (squeue's times, to the second).
    for src in submitted["source_jobs"]:
        _, source_end = interval(slurm, src["job_id"])
        tasks = [t for a in submitted["arrays"] if a["after_source_job"] == src["job_id"] for t in a["task_ids"]]
        assert len(tasks) == 2 and all(interval(slurm, t)[0] >= source_end for t in tasks)
    # The preempted training went on from a checkpoint, not from epoch 0.
    assert 1 <= json.loads((cache_dir / "source" / alexnet / "metrics.json").read_text())["resumed_from_epoch"] < 12

    # One job of the preempted net, run here from a fresh cache.
    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(tmp_path / "local-cache"))
    job, x = max(res.items(), key=lambda kv: int(kv[0]))
    f = x["factors"]
    local = execute(make_cfg(f"arch={f['arch']}", f"target={f['target']}", f"layer={f['layer']}", "source.epochs=12"),
                    tmp_path / "local" / job)
    assert x["factors"] == local["factors"]
    assert x["metrics"]["target_score"] == local["metrics"]["target_score"], job
    assert x["metrics"]["source_val_acc"] == local["metrics"]["source_val_acc"], job


def test_a_failed_source_job_fails_its_dependents_and_a_rerun_completes_them(slurm, cache_dir, tmp_path, make_cfg):
    """The alexnet source job is cancelled while it trains: its job is recorded failed with the reason (never
    submitted to run), the vgg job completes and the sweep finishes; the same command again runs only the missing
    job (and the source job, which resumes the training). `extract_first=false`: one array per source net (the
    first case covers the extracting array before the rest)."""
    sweep = tmp_path / "s"
    args = ["-m", "arch=alexnet,vgg", "layer=fc7", *LAUNCHER, "hydra.launcher.extract_first=false",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.stage_resources.source.timeout_min=10", f"hydra.sweep.dir={sweep}", *epochs(12)]
    alexnet = source_key(make_cfg, "arch=alexnet", "source.epochs=12")
    log = tmp_path / "sweep.log"
    proc = start_sweep(args, slurm, log)
    wait_for(lambda: (sweep / "slurm.json").exists() and
             (cache_dir / "source" / f".{alexnet}.resume" / "logs").exists(), "alexnet training", proc, log)
    (source_job,) = [j["job_id"] for j in slurm_jobs(sweep)["source_jobs"] if j["source"] == alexnet]
    slurm.run("scancel", source_job)
    finish(proc, log)
    first = slurm_jobs(sweep)  # one source job per net, and one array per net that waits on its net's source job
    assert sorted(j["source"] for j in first["source_jobs"]) == sorted([alexnet, source_key(make_cfg, "arch=vgg",
                                                                                            "source.epochs=12")])
    assert [len(a["jobs"]) for a in first["arrays"]] == [1, 1]
    assert sorted(a["after_source_job"] for a in first["arrays"]) == sorted(j["job_id"] for j in first["source_jobs"])
    res = results(sweep)
    assert res["0"]["status"] == "failed" and res["0"]["error"]["type"] == "DependencyNeverSatisfied"  # alexnet
    assert res["0"]["error"]["message"].startswith(f"source job {source_job} failed: CANCELLED")
    assert res["1"]["status"] == "ok"
    assert "DependencyNeverSatisfied" in (sweep / "summary.csv").read_text()  # the sweep finished, with its summary
    done = (sweep / "1" / "result.json").stat().st_mtime_ns

    r = run_cli(*args, env=slurm.env())
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert all(x["status"] == "ok" for x in res.values())
    assert (sweep / "1" / "result.json").stat().st_mtime_ns == done
    again = slurm_jobs(sweep)  # only what was missing was submitted
    assert [j["source"] for j in again["source_jobs"]] == [alexnet]
    assert [sorted(a["jobs"]) for a in again["arrays"]] == [[0]]


@pytest.mark.empty_cache  # both nets to train (the shared TINY cache holds seed 0's)
def test_a_replicate_group_is_one_source_job(slurm, cache_dir, tmp_path, make_cfg):
    """trainer.group_replicates=on: the two seeds' nets are trained together by one SLURM source job
    (`src.train.group`), saved under the keys single trainings would have, and every task finds its net cached
    (one array per net: extract_first=false)."""
    sweep = tmp_path / "s"
    r = run_cli("-m", "seed=0,1", "layer=fc7", *LAUNCHER, "hydra.launcher.timeout_min=5",
                "hydra.launcher.extract_first=false",
                "trainer.group_replicates=on", f"hydra.sweep.dir={sweep}", *TINY, env=slurm.env())
    assert r.returncode == 0, r.stderr[-3000:]
    submitted = slurm_jobs(sweep)
    keys = sorted(source_key(make_cfg, f"seed={s}") for s in (0, 1))
    assert sorted(j["source"] for j in submitted["source_jobs"]) == keys
    assert len({j["job_id"] for j in submitted["source_jobs"]}) == 1, r.stdout[-3000:]  # one job for the group
    res = results(sweep)
    assert len(res) == 2 and all(x["status"] == "ok" and x["cache"]["source_hit"] for x in res.values()), res
    assert all((cache_dir / "source" / k / "metrics.json").is_file() for k in keys)


@pytest.mark.overlapped  # its sweep started with this test process's first SLURM case
def test_job_at_its_time_limit_is_recorded_failed(time_limited_sweep):
    """A job still waiting at its time limit (here: for a source net whose build lock another process holds)
    is ended by SLURM (TIMEOUT), recorded as failed by the launcher, and the sweep goes on. One flat array
    (stage_scheduling=false, what an Optuna search gets): the job itself trains its source."""
    proc, log, sweep = time_limited_sweep
    finish(proc, log)
    res = results(sweep)["0"]
    assert res["status"] == "failed" and res["error"]["message"].endswith("TIMEOUT"), res["error"]
    assert "failed" in (sweep / "summary.csv").read_text()
