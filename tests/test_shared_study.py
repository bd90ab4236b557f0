"""Optuna studies shared between worker processes through a real PostgreSQL server (tests/services/postgres.py).

Workers are `python -m src.main search=factors_tpe ...` processes, as users start them (directly or through
`python -m src.search.workers N`), on a search space cut down to one tiny source net so that trials take seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import NO_REPORT, REPO, TINY, results, run_cli, spawn_cli
from tests.services.postgres import PostgresServer

# One PostgreSQL server per test process (under `pytest -n`, per worker that runs one of these cases).
pytestmark = pytest.mark.service

STUDY = "factors_tpe-synth_objects_new"
# One source net (alexnet/tiny) and a layer choice with one that fails the config check for every arch (conv9), among
# ten: a test enqueues it once, and a worker's three trials must not all draw it (a worker whose every trial failed
# exits 1). Among three layers one sampler seed drew it thrice; among ten, none of the seeds a worker can get here
# (worker 0 or 1, finding 0 to 5 trials: the seed moves with them) draws it for all three.
SPACE = ["hydra.sweeper.params.arch=alexnet", "hydra.sweeper.params.width=tiny", "hydra.sweeper.params.dimred=none",
         "hydra.sweeper.params.layer='choice(fc6,fc7,conv1,conv2,conv3,conv4,conv5,conv_last,fc8,conv9)'"]


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()  # the driver (psycopg) is the cluster extra, which `make test` installs
    yield server
    server.stop()


def load(url: str, env: dict, monkeypatch):
    """The study, read with the credentials in the environment (libpq reads PGPASSWORD, as the workers do), for this
    test only."""
    import optuna

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return optuna.load_study(study_name=STUDY, storage=url)


def all_results(root) -> list[dict]:
    """Every result.json of every worker's sweep dir."""
    return list(results(root, "**/result.json").values())


def grep_tree(root, needle: str) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            hits.append(str(p))
    return hits


@pytest.mark.slow
def test_two_workers_share_one_study_and_the_password_stays_out(postgres, cache_dir, tmp_path, monkeypatch):
    import optuna

    url = postgres.create_database("two_workers")
    # A trial that fails (layer conv9 exists in no alexnet), enqueued so that one worker surely gets it.
    optuna.create_study(study_name=STUDY, storage=url.replace("@", f":{postgres.password}@"),
                        direction="maximize").enqueue_trial({"layer": "conv9"})
    # The password is given in the URL, as a user might: it must end up in no file and no output.
    with_password = url.replace("@", f":{postgres.password}@")
    sweep = tmp_path / "sweep"
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "src.search.workers", "2", "search=factors_tpe", "hydra.sweeper.n_trials=3",
         f"hydra.sweeper.storage={with_password}", f"hydra.sweep.dir={sweep}", *SPACE, *TINY],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={k: v for k, v in os.environ.items()
                                                                    if k != "PGPASSWORD"})
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr + "".join(p.read_text() for p in sweep.glob("*.log"))
    print(f"two workers x 3 trials: {wall:.1f} s")

    study = load(url, postgres.env(), monkeypatch)
    trials = study.trials
    assert len(trials) == 6  # 2 workers x 3 trials, the enqueued one among them
    assert sorted(t.number for t in trials) == list(range(6))  # none lost, none duplicated
    states = Counter(t.state.name for t in trials)
    assert set(states) <= {"COMPLETE", "FAIL"} and states["FAIL"] >= 1
    assert all((t.state.name == "FAIL") == (t.params["layer"] == "conv9") for t in trials)
    # Each trial is one job of one worker; their records agree with the study's.
    res = all_results(sweep)
    assert len(res) == 6 and {len(all_results(sweep / f"worker{i}")) for i in (0, 1)} == {3}
    assert Counter(x["factors"]["layer"] for x in res) == Counter(t.params["layer"] for t in trials)
    assert Counter(x["status"] for x in res) == Counter({"ok": states["COMPLETE"], "failed": states["FAIL"]})
    # No credential anywhere: sweep dirs (.hydra/*.yaml, result.json, reports, logs) and the output.
    assert grep_tree(sweep, postgres.password) == []
    assert postgres.password not in r.stdout + r.stderr
    assert (sweep / "worker0" / ".hydra").exists() or any(sweep.glob("worker0/*/.hydra/hydra.yaml"))


@pytest.mark.slow
def test_killed_worker_leaves_the_study_usable(postgres, cache_dir, tmp_path, monkeypatch):
    url = postgres.create_database("kill_worker")
    env = {**os.environ, **postgres.env()}
    heartbeat = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]

    def worker(i: int, n_trials: int):
        return spawn_cli("search=factors_tpe", f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={url}",
                         f"hydra.sweep.dir={tmp_path / f'w{i}'}", f"hydra.sweeper.sampler.seed={i}",
                         "hydra.sweeper.params.layer='choice(fc6,fc7)'", *heartbeat, *SPACE[:3], *TINY, NO_REPORT,
                         env=env, stderr=tmp_path / f"w{i}.err")

    victim, survivor = worker(0, 50), worker(1, 4)
    # Kill the victim in the middle of a trial: its job dir exists and has no result yet (after one finished).
    deadline = time.time() + 300
    while time.time() < deadline:
        jobs = sorted((tmp_path / "w0").glob("[0-9]*"), key=lambda p: int(p.name))
        if len(jobs) >= 2 and not (jobs[-1] / "result.json").exists():
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-3000:]
    # A new worker after the grace period fails the dead worker's trial (no heartbeat) and goes on.
    time.sleep(3)
    late = worker(2, 1)
    _, err = late.communicate(timeout=600)
    assert late.returncode == 0, err[-3000:]

    study = load(url, postgres.env(), monkeypatch)
    states = Counter(t.state.name for t in study.trials)
    assert states["RUNNING"] == 0 and states["WAITING"] == 0
    assert states["FAIL"] == 1  # the killed worker's trial, failed by the heartbeat check
    assert states["COMPLETE"] == len(study.trials) - 1 >= 4 + 1 + 1  # survivor's 4, late's 1, victim's first


def test_url_password_moves_to_pgpassword_before_hydra_sees_it():
    from src.storage_url import prepare_storage_args

    env: dict[str, str] = {}
    argv = prepare_storage_args(["search=factors_tpe", "hydra.sweeper.storage=postgresql://u:s3cr%40t@db:5432/st"],
                                env)
    assert argv == ["search=factors_tpe", "hydra.sweeper.storage=postgresql://u@db:5432/st"]
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert prepare_storage_args(["hydra.sweeper.storage=sqlite:///x.db"], env) == ["hydra.sweeper.storage=sqlite:///x.db"]


@pytest.mark.slow
def test_missing_database_driver_is_one_line_naming_the_extra():
    # pg8000 is a PostgreSQL driver this project does not install: the same path as psycopg missing.
    r = run_cli("search=factors_tpe", "hydra.sweeper.storage=postgresql+pg8000://u:hidden@127.0.0.1:9/db")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and ".[cluster]" in r.stderr and "pg8000" in r.stderr
    assert "hidden" not in r.stderr + r.stdout


def test_a_bad_search_parameter_fails_its_trial_and_the_process_exits(tmp_path):
    """A typo in a searched key is found when the trial is launched: the run ends with the one line (it used to
    hang at exit on the trial's heartbeat thread) and the study holds the trial as failed, not running."""
    import optuna

    url = f"sqlite:///{tmp_path}/study.db"
    r = run_cli("search=factors_tpe", "hydra.sweeper.n_trials=2", "laye=choice(fc6,fc7)",
                f"hydra.sweeper.storage={url}", timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: laye is not a config key")
    (summary,) = optuna.get_all_study_summaries(url)
    trials = optuna.load_study(study_name=summary.study_name, storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]


def test_failing_the_running_trials_survives_one_told_meanwhile(tmp_path):
    """Another worker fails one of this process's trials first: the rest are still failed, every beat stops, and
    nothing is raised (it runs while the launcher's own error is on its way to the user)."""
    import optuna
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    from src.search.storage import open_storage

    url = f"sqlite:///{tmp_path}/study.db"
    storage = open_storage(url, heartbeat_interval=10, grace_period=20)
    study = optuna.create_study(storage=storage, study_name="s")
    first, second = study.ask(), study.ask()
    RDBStorage(url).set_trial_state_values(first._trial_id, TrialState.FAIL)
    beats = list(storage._beats.values())
    storage.fail_running()
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]
    assert not storage._beats and not any(b._thread.is_alive() for b in beats)


def test_workers_starting_on_a_study_with_trials_keep_distinct_sampler_seeds(tmp_path):
    """`python -m src.search.workers 2`: worker i runs with seed + i, and a run on a study that holds n trials moves
    its seed on. With seed + n, worker 0 starting once worker 1 had made its first trial took seed 1, worker 1's,
    and both sampled the same settings (two trials spent on one point). The moved seed is drawn from (seed, n)."""
    import optuna
    from omegaconf import OmegaConf

    from hydra_plugins.transferfactors_plugins.shared_study import _continued_seed

    url = f"sqlite:///{tmp_path}/study.db"
    sampler = lambda seed: OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": seed})  # noqa: E731
    assert _continued_seed(sampler(1), url, "s") == sampler(1)  # no study yet: worker 1 keeps its seed
    study = optuna.create_study(storage=url, study_name="s")
    study.enqueue_trial({"x": 0})
    study.tell(study.ask(), 0.0)
    moved = _continued_seed(sampler(0), url, "s")["seed"]  # worker 0, one trial in the study
    assert moved not in (0, 1)
    assert _continued_seed(sampler(0), url, "s")["seed"] == moved  # reproducible from the study's state
    assert len({_continued_seed(sampler(s), url, "s")["seed"] for s in range(50)}) == 50
