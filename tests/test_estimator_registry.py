"""The estimator registry as the config sees it: every estimator selectable, `estimator.extra` validated,
expensive ones recorded only when asked, and `objective=<estimator>` for a search."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import src
from src.check import ConfigError, validate
from src.main import execute, objective
from src.transferability.estimators import ESTIMATORS


def test_every_registered_estimator_has_a_config_and_validates(make_cfg):
    conf = {p.stem for p in (Path(src.REPO_ROOT) / "conf" / "estimator").glob("*.yaml")}
    assert conf == {"none", *ESTIMATORS}
    for name in ESTIMATORS:
        validate(make_cfg(f"estimator={name}"))
    assert ESTIMATORS["nleep"].cost == "expensive"  # (an expensive one a user adds is asked for like it)


def test_unknown_extra_estimator_is_one_clear_line(make_cfg):
    with pytest.raises(ConfigError, match=r"estimator.extra.*'?nlepe'?.*nleep") as err:
        validate(make_cfg("estimator.extra=[nlepe]"))
    assert "\n" not in str(err.value)
    validate(make_cfg("estimator.extra=[all]"))


def test_objective_can_name_an_estimator():
    cfg = OmegaConf.create({"objective": "sfda"})
    result = {"status": "ok", "timings_s": {"total": 1.0},
              "metrics": {"target_score": 0.5, "transferability": {"sfda": 0.25, "logme": -1.0}}}
    assert objective(cfg, result) == 0.25
    assert objective(OmegaConf.create({"objective": ["target_score", "logme"]}), result) == [0.5, -1.0]


def test_expensive_estimator_only_when_asked(make_cfg, tmp_path):
    transfer = execute(make_cfg("estimator.extra=[all]", "objective=sfda"), tmp_path / "run")["metrics"]
    assert set(transfer["transferability"]) == set(ESTIMATORS)
    transfer = execute(make_cfg(), tmp_path / "run2")["metrics"]["transferability"]
    assert set(transfer) == {n for n, e in ESTIMATORS.items() if e.cost == "cheap"}


@pytest.mark.parametrize("name", ["logme", "nleep"])
def test_an_estimator_replaces_the_probe_and_records_its_estimate(make_cfg, cache_dir, tmp_path, name):
    """`estimator=<name>` trains no probe: the job records the estimate, computed on the chosen layer's labelled
    target images (train + val), and no probe score; the sweeper's objective is the estimate."""
    import numpy as np

    from src.features.extract import load_features

    cfg = make_cfg(f"estimator={name}")
    r = execute(cfg, tmp_path)
    m = r["metrics"]
    assert (m["estimator"], m["target_score"], m["best_C"], m["val_scores"]) == (name, None, None, None)
    assert not (tmp_path / "test_correct.npy").exists()  # nothing was scored on test
    plan = validate(cfg)
    x, y = zip(*(load_features(cache_dir / "features" / r["keys"]["features"], split, plan.spec, plan.tap, cfg.pooling)
                 for split in ("train", "val")))
    expected = ESTIMATORS[name].fn(np.concatenate(x), np.concatenate(y))
    assert m["estimator_score"] == m["transferability"][name] == pytest.approx(expected)
    assert objective(cfg, r) == m["estimator_score"]
