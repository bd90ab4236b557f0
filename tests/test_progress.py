"""The sweep progress line: job count from the sweeper's own expansion, elapsed, ETA from the stages the remaining
jobs still need (src.report.eta), running best."""

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import src
from src.report.eta import remaining, stage_times
from src.report.progress import _clock, planned_remaining, progress_line, sweep_plan


def test_grid_size_counts_sweeper_params_and_command_line_sweeps():
    with initialize_config_dir(str(src.REPO_ROOT / "conf")):
        layer_study = compose("config", overrides=["experiment=layer_study"], return_hydra_config=True)
    plan = sweep_plan(layer_study)
    assert plan["total"] == 56 and plan["kind"] == "grid" and set(plan["swept"]) == {"target", "layer"}
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": None},
                                      "overrides": {"task": ["layer=fc6,fc7", "width=tiny", "seed=range(3)"]}}})
    plan = sweep_plan(cfg)
    assert plan["total"] == 6 and plan["swept"] == ["layer", "seed"]


def test_optuna_counts_trials():
    with initialize_config_dir(str(src.REPO_ROOT / "conf")):
        tpe = compose("config", overrides=["search=factors_tpe", "hydra.sweeper.n_trials=12"], return_hydra_config=True)
    plan = sweep_plan(tpe)
    assert plan["kind"] == "optuna" and plan["total"] == 12 and plan["direction"] == "maximize"


def test_line_has_count_elapsed_eta_and_best():
    header = {"start": 100.0, "total": 8, "kind": "grid", "direction": "maximize", "objective": "target_score"}
    # The first job trained the source net (50 s); the others took 10 s each.
    records = [{"t": 150.0, "value": 0.5, "setting": "layer=fc6"},
               {"t": 160.0, "value": None, "setting": "layer=conv9"},
               {"t": 170.0, "value": 0.75, "setting": "layer=fc7"},
               {"t": 180.0, "value": 0.25, "setting": "layer=fc8"}]
    line = progress_line(header, records, now=180.0)
    # 4 of 8 done in 80 s; 4 left at the median 10 s a job -> 40 s.
    assert line == ("[sweep] job 4/8 | elapsed 0:01:20 | ETA 0:00:40 | best target_score=0.7500 (layer=fc7) | "
                    "1 failed")
    optuna = progress_line({**header, "kind": "optuna", "total": 12, "direction": "minimize"}, records[:2], 160.0)
    assert optuna.startswith("[sweep] trial 2 of 12 | elapsed 0:01:00 | ETA 0:05:00 | best of this run target_score=0.5000")


def test_best_is_the_best_on_the_last_jobs_target_when_targets_are_swept():
    # Scores of different target tasks are not comparable: an easy task's score is not the sweep's best setting.
    header = {"start": 0.0, "total": 4, "kind": "grid", "direction": "maximize", "objective": "target_score"}
    records = [{"t": 1.0, "value": 0.9, "setting": "target=easy layer=fc6", "target": "easy"},
               {"t": 2.0, "value": 0.4, "setting": "target=hard layer=fc6", "target": "hard"},
               {"t": 3.0, "value": 0.5, "setting": "target=hard layer=fc7", "target": "hard"}]
    assert "| best on hard target_score=0.5000 (layer=fc7)" in progress_line(header, records, now=3.0)
    assert "| best on easy target_score=0.9000 (layer=fc6)" in progress_line(header, records[:1], now=1.0)


def test_remaining_work_counts_each_shared_stage_once():
    jobs = [{"source": "a", "features": "fa1"}, {"source": "a", "features": "fa1"},
            {"source": "b", "features": "fb1"}, {"source": "b", "features": "fb2"}, {}]  # {}: stops at the check
    times = {"source": 60.0, "features": 10.0, "finetune": None, "job": 1.0}
    left = remaining(jobs, {("source", "a"), ("features", "fa1")}, times)
    assert left.seconds == 60.0 + 2 * 10.0 + 5 * 1.0 and left.untimed == {}
    assert remaining(jobs, set(), times, workers=2).seconds == (2 * 60.0 + 3 * 10.0 + 5.0) / 2
    # A stage no job has timed yet is reported apart instead of being guessed.
    assert remaining(jobs, set(), {**times, "source": None}).untimed == {"source": 2}


def test_stage_times_leave_a_first_job_imports_out_of_the_per_job_time():
    records = [{"wall": 14.0, "total": 4.0, "cold": True, "built": {"features": 3.0}},  # imports torch: 10 s
               {"wall": 1.2, "total": 1.0, "cold": False, "built": {}},
               {"wall": 0.3, "total": None, "cold": False, "built": {}}]  # skipped: done by an earlier run
    times = stage_times(records, source_walls=[50.0, 70.0])
    assert times["features"] == 3.0 and times["source"] == 60.0 and times["finetune"] is None
    assert times["job"] == pytest.approx(1.0 + 0.2)  # median own time (1.0, 1.0, 0.3) + warm overhead 0.2


def test_the_line_estimates_from_the_plan_when_cached_jobs_finish_first():
    """Two sources: the cached one's jobs end first in seconds; the other source's jobs still need a training
    (recorded by the cache for the first: 300 s) and their extractions."""
    jobs = [{"source": "a", "features": "fa"}] * 2 + [{"source": "b", "features": "fb"}] * 2
    header = {"start": 0.0, "total": 4, "kind": "grid", "direction": "maximize", "objective": "target_score",
              "plan": {"jobs": jobs, "cached": [["source", "a"]], "source_walls": [300.0], "workers": 1}}
    records = [{"t": 30.0, "value": 0.5, "setting": "seed=0", "num": 0, "wall": 25.0, "cold": True, "total": 15.0,
                "built": {"features": 12.0}},
               {"t": 33.0, "value": 0.6, "setting": "seed=0", "num": 1, "wall": 3.0, "cold": False, "total": 2.5,
                "built": {}}]
    # 300 s training + 12 s extraction + 2 jobs x (median own (3.0, 2.5) + overhead 0.5) = 318.5 s, not 2 x 16.5 s.
    assert "ETA 0:05:18 |" in progress_line(header, records, now=33.0)
    untimed = {**header, "plan": {**header["plan"], "source_walls": []}}
    assert "ETA >0:00:18 (+ 1 source training not timed yet) |" in progress_line(untimed, records, now=33.0)


def test_eta_within_twice_the_time_left_with_one_cached_and_one_uncached_source(tmp_path):
    """A real sweep over two source seeds whose first source net is in the cache: after the first job (a cache
    hit) the line must foresee the second source's training."""
    import torch

    from src.cache import Store
    from src.check import validate
    from src.experiment import source_stage
    from tests.conftest import NO_REPORT, TINY_TARGET, compose_tiny, run_cli

    cache = tmp_path / "cache"
    sizes = ["width=tiny", "source.num_classes=4", "source.images_per_class=120", "source.val_per_class=10",
             "source.epochs=6", "trainer.optim.batch_size=32", "trainer.num_threads=1", *TINY_TARGET]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's jobs train (trainer.num_threads=1)
    try:
        cfg = compose_tiny(*sizes, "seed=0", f"paths.cache_dir={cache}", tiny=False)
        source_stage(cfg, validate(cfg), Store(cache))
    finally:
        torch.set_num_threads(threads)
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "seed=0,1", *sizes, f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep}", NO_REPORT)
    assert r.returncode == 0, r.stderr
    header, *done = [json.loads(ln) for ln in (sweep / "progress.jsonl").read_text().splitlines()]
    assert [d["built"].keys() for d in done] == [{"features"}, {"source", "features"}]
    # What the line said after the first job, at full precision (the line prints it to the second).
    eta = planned_remaining(header, done[:1])
    assert eta.untimed == {}
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("[sweep] job 1/2"))
    assert f"ETA {_clock(eta.seconds)} " in line
    actual = done[1]["t"] - done[0]["t"]
    assert actual / 2 <= eta.seconds <= 2 * actual, (eta.seconds, actual)

    # The staged launcher handed its own plan over; without stage scheduling the callback plans the sweep itself
    # (src.job_plan.job_plan): the same jobs with the same keys (all cached by now).
    again = tmp_path / "again"
    r = run_cli("-m", "seed=0,1", *sizes, f"paths.cache_dir={cache}", f"hydra.sweep.dir={again}", NO_REPORT,
                "hydra.launcher.stage_scheduling=false")
    assert r.returncode == 0, r.stderr
    own = json.loads((again / "progress.jsonl").read_text().splitlines()[0])["plan"]
    assert own["jobs"] == header["plan"]["jobs"] and len(own["jobs"]) == 2
    assert {tuple(c) for c in own["cached"]} == {(s, k) for job in own["jobs"] for s, k in job.items()}
    assert {tuple(c) for c in header["plan"]["cached"]} == {("source", own["jobs"][0]["source"])}


def test_a_job_that_waited_for_a_lock_says_so():
    """An Optuna trial is not planned: when it waited for a stage another trial was building, its line says so."""
    header = {"start": 100.0, "total": 4, "kind": "optuna", "direction": "maximize", "objective": "target_score"}
    waited = [{"t": 150.0, "value": 0.5, "setting": "layer=fc6", "lock_wait": 41.6}]
    assert progress_line(header, waited, 150.0).endswith(
        "| this trial waited 42s for a cache lock (another job was building a stage it needs)")
    assert "waited" not in progress_line(header, [{**waited[0], "lock_wait": 0.0}], 150.0)
