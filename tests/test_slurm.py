"""The project's `hydra/launcher=slurm` preset against a real single-node SLURM cluster (tests/services/slurm.py).

Sweeps are submitted with sbatch as SLURM job arrays, exactly as on a cluster, with the tiny configs; the
artifact cache (TRANSFER_CACHE_DIR) is the shared filesystem the jobs coordinate through.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import pytest
from filelock import FileLock

from src.main import execute
from tests.conftest import REPO, TINY, results, run_cli
from tests.services.slurm import PARTITION, SlurmCluster

# One cluster per test process: under `pytest -n` (make test) every SLURM test runs on the same worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

LAUNCHER = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]


@pytest.fixture(scope="session")
def slurm():
    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


def source_key(make_cfg, *overrides: str) -> str:
    from src.cache import make_key
    from src.keys import source_payload
    from src.check import validate

    cfg = make_cfg(*overrides)
    return make_key(source_payload(cfg, validate(cfg)))


def array_task(sweep, job: int) -> str:
    """The SLURM id (<array job>_<task>) of a sweep's job, from submitit's folder for it."""
    return next((sweep / ".submitit").glob(f"*_{job}")).name


def interval(slurm: SlurmCluster, task: str) -> tuple[datetime, datetime]:
    start, end = slurm.run("squeue", "-h", "-t", "all", "-o", "%S %e", "-j", task).stdout.split()
    return datetime.fromisoformat(start), datetime.fromisoformat(end)


@pytest.mark.empty_cache  # the SLURM jobs build both source nets
def test_grid_through_sbatch_matches_a_local_run(slurm, cache_dir, tmp_path, make_cfg, monkeypatch):
    grid = ["-m", "arch=alexnet,vgg", "layer=fc6,fc7"]
    t0 = time.perf_counter()
    r = run_cli(*grid, *LAUNCHER, "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path / 'slurm'}", *TINY,
                env=slurm.env())
    t_slurm = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    on_slurm = results(tmp_path / "slurm")
    assert len(on_slurm) == 4 and all(x["status"] == "ok" for x in on_slurm.values())
    # Two source trainings for four jobs: the two jobs of each arch share one (they ran at the same time, and the
    # per-key lock on the shared cache made one wait for the other's net).
    for arch in ("alexnet", "vgg"):
        hits = sorted(x["cache"]["source_hit"] for x in on_slurm.values() if x["factors"]["arch"] == arch)
        assert hits == [False, True], arch
    assert len(list((cache_dir / "source").glob("*/manifest.json"))) == 2
    (s0, e0), (s1, e1) = (interval(slurm, array_task(tmp_path / "slurm", j)) for j in (0, 1))  # alexnet fc6, fc7
    assert s0 <= e1 and s1 <= e0, "the two jobs sharing a source net did not overlap"
    # Each job run here, in this process, from a fresh cache (everything recomputed), gives the same numbers.
    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(tmp_path / "local-cache"))
    t0 = time.perf_counter()
    for job, x in sorted(on_slurm.items()):
        local = execute(make_cfg(f"arch={x['factors']['arch']}", f"layer={x['factors']['layer']}"), tmp_path / job)
        assert x["factors"] == local["factors"]
        assert x["metrics"]["target_score"] == local["metrics"]["target_score"]
        assert x["metrics"]["source_val_acc"] == local["metrics"]["source_val_acc"]
    print(f"2x2 grid wall time: SLURM {t_slurm:.1f} s, here {time.perf_counter() - t0:.1f} s")


def test_cancelled_job_is_recorded_and_a_rerun_runs_only_it(slurm, cache_dir, tmp_path, make_cfg):
    sweep = tmp_path / "s"
    tiny = [o for o in TINY if not o.startswith("source.epochs")] + ["source.epochs=4"]
    args = ["-m", "arch=alexnet,vgg", *LAUNCHER, "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
            *tiny]
    staging = cache_dir / "source" / f".{source_key(make_cfg, 'arch=alexnet', 'source.epochs=4')}.tmp-*"
    proc = subprocess.Popen([sys.executable, "-m", "src.main", *args], cwd=REPO, env={**os.environ, **slurm.env()},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Cancel the alexnet job (array task 0) once its source net is training (Lightning's logs are in staging).
    deadline = time.time() + 300
    while time.time() < deadline and not list(staging.parent.glob(staging.name + "/logs")):
        time.sleep(0.05)
    slurm.run("scancel", array_task(sweep, 0))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    res = results(sweep)
    assert res["0"]["status"] == "failed" and "CANCELLED" in res["0"]["error"]["message"]
    assert res["1"]["status"] == "ok"
    assert not list(staging.parent.glob(staging.name))  # the cancelled build left no staging dir behind...
    assert (sweep / "summary.csv").exists()  # ...and the sweep finished, with its summary
    ok_mtime = (sweep / "1" / "result.json").stat().st_mtime_ns
    r = run_cli(*args, env=slurm.env())
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert res["0"]["status"] == "ok" and res["1"]["status"] == "ok"
    assert (sweep / "1" / "result.json").stat().st_mtime_ns == ok_mtime  # the finished job was not redone
    assert any("already done" in log.read_text() for log in (sweep / "1").glob("*.log"))  # the job's own log


def test_job_at_its_time_limit_is_recorded_failed(slurm, cache_dir, tmp_path, make_cfg):
    """A job still waiting at its time limit (here: for a source net whose build lock another process holds)
    is ended by SLURM (TIMEOUT), recorded as failed by the launcher, and the sweep goes on."""
    sweep = tmp_path / "s"
    key = source_key(make_cfg, "seed=7")
    lock = cache_dir / "source" / f"{key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        r = run_cli("-m", "seed=7", *LAUNCHER, "hydra.launcher.timeout_min=1", f"hydra.sweep.dir={sweep}", *TINY,
                    env=slurm.env())
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)["0"]
    assert res["status"] == "failed" and res["error"]["message"].endswith("TIMEOUT"), res["error"]
    assert "failed" in (sweep / "summary.csv").read_text()
