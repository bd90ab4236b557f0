"""The estimator registry as the config sees it: every estimator selectable, `estimator.extra` validated,
expensive ones recorded only when asked, and `objective=<estimator>` for a search."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import src
from src.check import ConfigError, validate
from src.main import objective
from src.transferability.estimators import ESTIMATORS
from tests.conftest import TINY, run_cli


def test_every_registered_estimator_has_a_config_and_validates(make_cfg):
    conf = {p.stem for p in (Path(src.REPO_ROOT) / "conf" / "estimator").glob("*.yaml")}
    assert conf == {"none", *ESTIMATORS}
    for name in ESTIMATORS:
        validate(make_cfg(f"estimator={name}"))
    assert {n for n, e in ESTIMATORS.items() if e.cost == "expensive"} == {"nleep"}


def test_unknown_extra_estimator_is_one_clear_line(make_cfg):
    with pytest.raises(ConfigError, match=r"estimator.extra='?nlepe'?.*nleep") as err:
        validate(make_cfg("estimator.extra=[nlepe]"))
    assert "\n" not in str(err.value)
    validate(make_cfg("estimator.extra=[all]"))


def test_objective_can_name_an_estimator():
    cfg = OmegaConf.create({"objective": "sfda"})
    result = {"status": "ok", "timings_s": {"total": 1.0},
              "metrics": {"target_score": 0.5, "transferability": {"sfda": 0.25, "logme": -1.0}}}
    assert objective(cfg, result) == 0.25
    assert objective(OmegaConf.create({"objective": ["target_score", "logme"]}), result) == [0.5, -1.0]


@pytest.mark.slow
def test_expensive_estimator_only_when_asked(cache_dir, tmp_path):
    r = run_cli(*TINY, "estimator.extra=[nleep]", "objective=sfda", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr[-3000:]
    transfer = json.loads((tmp_path / "run" / "result.json").read_text())["metrics"]["transferability"]
    assert set(transfer) == set(ESTIMATORS)
    r = run_cli(*TINY, f"hydra.run.dir={tmp_path / 'run2'}")
    transfer = json.loads((tmp_path / "run2" / "result.json").read_text())["metrics"]["transferability"]
    assert set(transfer) == {n for n, e in ESTIMATORS.items() if e.cost == "cheap"}
