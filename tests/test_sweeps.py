"""Sweeps under Hydra's launchers and the Optuna sweeper (subprocesses, as users run them)."""

import json
import math
import os
import signal
import time

import pytest
from omegaconf import OmegaConf

from tests.conftest import NO_REPORT, REPO, TINY, results, run_cli, spawn_cli

pytestmark = pytest.mark.slow

# The searches' space cut down to the session's pre-trained tiny source net (arch and width fixed), so that trials
# differ in what is cheap to vary (layer, pooling, norm, dimred) and take seconds.
ONE_SOURCE = ["hydra.sweeper.params.arch=alexnet", "hydra.sweeper.params.width=tiny"]


def test_optuna_search_persists_and_continues_its_study(cache_dir, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["search=factors_tpe", "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}", *ONE_SOURCE, *TINY,
            NO_REPORT]
    r = run_cli(*args, f"hydra.sweep.dir={tmp_path / 's1'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(results(tmp_path / "s1")) == 4
    # the search's own record: the report's command block shows the search, not one trial
    assert OmegaConf.load(tmp_path / "s1" / "multirun.yaml").hydra.sweeper.n_trials == 4
    assert "[sweep] trial 4 of 4 | elapsed" in r.stdout and "best of this run val_score=" in r.stdout
    study = optuna.load_study(study_name="factors_tpe-synth_objects_new", storage=storage)
    assert len(study.trials) == 4
    # The search selects on the probe's val score, never on the test score the report gives.
    from src.record import chosen_val_score

    assert sorted(t.value for t in study.trials) == sorted(
        chosen_val_score(x["metrics"]) for x in results(tmp_path / "s1").values())
    # Running the same command again adds trials to the same study.
    r = run_cli(*args, f"hydra.sweep.dir={tmp_path / 's2'}")
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="factors_tpe-synth_objects_new", storage=storage)
    assert len(study.trials) == 8
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    # ...with new settings: the preset's fixed sampler seed would replay the first run's start-up trials
    assert [t.params for t in study.trials[4:]] != [t.params for t in study.trials[:4]]
    assert (tmp_path / "s2" / "summary.csv").exists()


def test_pareto_search_writes_its_pareto_front(cache_dir, tmp_path):
    """search=factors_pareto: two objectives per trial (val score up, the dimension the classifier sees down: PCA's
    n_components when it runs), and the sweep's optimization_results.yaml lists exactly the study's non-dominated
    trials with their values and params."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = tmp_path / "s"
    r = run_cli("search=factors_pareto", "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}",
                f"hydra.sweep.dir={sweep}", "dimred.n_components=8", *ONE_SOURCE, *TINY, NO_REPORT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[sweep] trial 4 of 4 | elapsed" in r.stdout and "failed" not in r.stdout.split("[sweep] trial 4 of 4")[1]
    study = optuna.load_study(study_name="factors_pareto-synth_objects_new", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and all(len(t.values) == 2 for t in done)
    from src.record import chosen_val_score

    def dim(x):
        pca = x["factors"]["dimred"] != "none"
        return min(8, x["metrics"]["feature_dim"]) if pca else x["metrics"]["feature_dim"]

    # Each trial's values are its job's (val score, dimension the classifier sees).
    jobs = sorted((chosen_val_score(x["metrics"]), dim(x)) for x in results(sweep).values())
    assert sorted(tuple(t.values) for t in done) == jobs

    def dominated(v, by):
        return by[0] >= v[0] and by[1] <= v[1] and tuple(by) != tuple(v)

    front = [t for t in done if not any(dominated(t.values, o.values) for o in done)]
    written = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))["solutions"]
    assert sorted((s["values"], sorted(s["params"].items())) for s in written) == sorted(
        (list(t.values), sorted(t.params.items())) for t in front)


@pytest.mark.empty_cache  # the sweep trains both source nets
def test_joblib_trains_the_missing_sources_first_in_parallel_and_splits_the_cores(cache_dir, tmp_path):
    """2 source nets x 2 layers on 2 joblib workers: the two jobs that train the nets run first, at the same time in
    the two worker processes; each other job starts once its net is in the cache (after its build ended), so no
    job waits on a lock. With trainer.num_threads unset each job's config gets cores / n_jobs threads and its torch
    runs on them (seen from inside the job by tests/job_probe.py)."""
    from src.cache import Store

    sweep = tmp_path / "s"
    per_job = max(1, (os.cpu_count() or 1) // 2)
    r = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "arch=alexnet,vgg", "layer=fc6,fc7",
                f"hydra.sweep.dir={sweep}", "+hydra.callbacks.job_probe._target_=tests.job_probe.JobProbe", NO_REPORT,
                *[o for o in TINY if not o.startswith("trainer.num_threads")])
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert len(res) == 4 and all(x["status"] == "ok" for x in res.values())
    assert [res[j]["cache"]["source_hit"] for j in "0123"] == [False, True, False, True]  # 0, 2 train the nets
    assert [x["timings_s"]["lock_wait"] for x in res.values()] == [0] * 4
    assert "[sweep] job 4/4" in r.stdout  # jobs in two worker processes, counted together
    builds = {b["key"]: b for b in Store(cache_dir).timings("source")}
    assert len(builds) == 2 and len(list((cache_dir / "source").glob("*/manifest.json"))) == 2
    clock = {j: res[j]["clock"] for j in "0123"}
    assert max(clock["0"]["start"], clock["2"]["start"]) < min(clock["0"]["end"], clock["2"]["end"])  # together
    for builder, other in (("0", "1"), ("2", "3")):
        assert clock[other]["start"] >= builds[res[builder]["keys"]["source"]]["end"]
    probes = {j: json.loads((sweep / j / "job_probe.json").read_text()) for j in "0123"}
    assert probes["0"]["pid"] != probes["2"]["pid"]  # two worker processes
    assert {(p["torch_threads"], p["num_threads"]) for p in probes.values()} == {(per_job, per_job)}


def test_submitit_local_launcher(cache_dir, tmp_path):
    sweep = tmp_path / "s"
    r = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "layer=fc6,fc7",
                f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert len(res) == 2 and all(x["status"] == "ok" for x in res.values())


def test_slurm_preset_composes(make_cfg):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf")):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 120)


def test_failing_job_is_recorded_and_the_sweep_goes_on(cache_dir, tmp_path):
    sweep = tmp_path / "s"
    r = run_cli("-m", "layer=fc6,conv9,fc7", f"hydra.sweep.dir={sweep}", "source_val_features=true", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert [res[k]["status"] for k in ("0", "1", "2")] == ["ok", "failed", "ok"]
    assert res["1"]["error"]["type"] == "ConfigError" and "valid layers" in res["1"]["error"]["message"]
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and any("failed" in line for line in summary)
    # The callback also wrote the report, failed job included.
    md = (sweep / "report" / "report.md").read_text()
    assert "## Failed jobs" in md and "conv9" in md
    assert len((sweep / "report" / "results.csv").read_text().splitlines()) == 1 + 3
    assert (sweep / "report" / "score_vs_layer.png").stat().st_size > 1000
    # The measured distance reads the source's val features the jobs cached (source_val_features=true).
    from src.report.build import build_report

    out = build_report([sweep], tmp_path / "rep", distance=True, cache_dir=cache_dir)
    dist = json.loads((out / "analysis.json").read_text())["measured_distance"]["table"]
    assert len(dist) == 1 and dist[0]["layer"] == "fc7" and dist[0]["frechet"] > 0 and math.isfinite(dist[0]["logme"])


def test_resume_after_kill_finishes_only_missing_jobs(cache_dir, tmp_path):
    """Killed once its first job is done (its source net is the session's pre-trained one; the other three train
    theirs), the same command in the same sweep dir runs exactly the unfinished jobs."""
    sweep = tmp_path / "s"
    args = ["-m", "arch=alexnet,vgg", "seed=0,1", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY]
    proc = spawn_cli(*args)
    deadline = time.time() + 300
    while time.time() < deadline and not any(x["status"] == "ok" for x in results(sweep).values()):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {k: (sweep / k / "result.json").stat().st_mtime_ns for k, x in results(sweep).items()
                   if x["status"] == "ok"}
    assert 1 <= len(done_before) < 4
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    after = results(sweep)
    assert len(after) == 4 and all(x["status"] == "ok" for x in after.values())
    for k, mtime in done_before.items():  # finished jobs were skipped, not redone
        assert (sweep / k / "result.json").stat().st_mtime_ns == mtime
    assert "already done" in r.stderr + r.stdout


@pytest.mark.empty_cache
def test_snapshot_sweep_trains_once_and_tracks_in_the_sweeps_mlflow_store(cache_dir, tmp_path):
    """source.snapshot=1,2 trains the source net once. With logger=mlflow and no store given, the runs go to the
    default store, <sweep dir>/mlflow.db: the source net's training (once) and one run per job."""
    from mlflow import MlflowClient

    sweep = tmp_path / "s"
    r = run_cli("-m", "source.snapshot=1,2", "logger=mlflow", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert sorted(x["cache"]["source_hit"] for x in res.values()) == [False, True]
    assert sorted(x["factors"]["snapshot"] for x in res.values()) == [1, 2]
    assert len({x["keys"]["source"] for x in res.values()}) == 1
    assert len({x["keys"]["features"] for x in res.values()}) == 2
    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("transferfactors").experiment_id])
    assert sorted(run.data.tags["stage"] for run in runs) == ["job", "job", "source"]
    assert sorted(run.data.params["snapshot"] for run in runs if run.data.tags["stage"] == "job") == ["1", "2"]
