"""The sweep progress line: job count from the sweeper's own expansion, elapsed, ETA, running best."""

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import src
from src.report.progress import progress_line, sweep_plan


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
    assert optuna.startswith("[sweep] trial 2 of 12 | elapsed 0:01:00 | ETA 0:05:00 | best so far target_score=0.5000")


def test_a_job_that_waited_for_a_lock_says_so():
    """An Optuna trial is not planned: when it waited for a stage another trial was building, its line says so."""
    header = {"start": 100.0, "total": 4, "kind": "optuna", "direction": "maximize", "objective": "target_score"}
    waited = [{"t": 150.0, "value": 0.5, "setting": "layer=fc6", "lock_wait": 41.6}]
    assert progress_line(header, waited, 150.0).endswith(
        "| this trial waited 42s for a cache lock (another job was building a stage it needs)")
    assert "waited" not in progress_line(header, [{**waited[0], "lock_wait": 0.0}], 150.0)
