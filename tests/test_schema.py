"""The closed, typed configuration (src/schema.py): every key of every group option is declared with a type and a
range or choice set; unknown keys and bad values stop a run in one line, before anything is built."""

from __future__ import annotations

import os
import time

import pytest
from hydra import compose, initialize_config_dir

from src.schema import SCHEMA, check_config, reference
from tests.conftest import REPO, children_cpu, run_cli

CONF = REPO / "conf"
# Options that need a companion to compose or to be valid (the pretrained source needs a pretrained arch).
COMPANIONS = {("source", "imagenet_torchvision"): ["arch=tv_alexnet"],
              ("source", "imagefolder"): ["source.root=/data"], ("target", "imagefolder"): ["target.root=/data"]}


def group_options():
    for group in sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            yield group, option


def test_every_key_of_every_group_option_is_declared_with_a_type_and_a_range():
    seen = set()
    with initialize_config_dir(str(CONF), version_base=None):
        for group, option in group_options():
            cfg = compose("config", overrides=[f"{group}={option}", *COMPANIONS.get((group, option), [])])
            plain = {k: v for k, v in cfg.items() if k != "hydra"}
            check_config(cfg)  # raises on any key the schema does not declare
            seen |= _keys(plain)
    for key, field in SCHEMA.items():
        if field.kind in ("int", "float"):
            assert field.low is not None and field.high is not None, f"{key}: a number without a range"
        if field.kind == "choice":
            assert field.options(), f"{key}: an empty choice set"
        if field.kind == "list" and field.item is not None:
            assert field.item.kind != "float" or field.item.low is not None, key
        assert field.doc or field.kind == "node" or field.item is not None, f"{key}: undocumented"
    unused = {k for k in SCHEMA if k not in seen and not k.endswith("[]") and "[]" not in k}
    assert not unused, f"declared keys no config option has: {sorted(unused)}"


def _keys(node, path=""):
    out = {path} if path else set()
    if isinstance(node, dict):
        for k, v in node.items():
            out |= _keys(v, f"{path}.{k}" if path else str(k))
    elif hasattr(node, "items"):
        for k, v in node.items():
            out |= _keys(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list,)) or type(node).__name__ == "ListConfig":
        for v in node:
            out |= _keys(v, f"{path}[]")
    return out


def test_the_configuration_reference_is_generated_from_the_schema():
    assert (REPO / "docs" / "configuration.md").read_text() == reference(), "run: python -m src.schema > docs/configuration.md"


BAD = [  # (args, the line): the five inputs that used to train silently or fail after training
    (["+foo=1"], "error: foo is not a config key; nearest valid key:"),
    (["source.augment=foo"], "error: source.augment='foo' is unknown; valid: flip_crop, none"),
    (["finetune=full", "finetune.optimizer=foo"], "error: finetune.optimizer='foo' is unknown; valid: sgd, adamw"),
    (["dimred=pca", "dimred.whiten=maybe"], "error: dimred.whiten='maybe' must be true or false"),
    (["trainer.accelerator=mps"], "error: trainer.accelerator='mps' is unknown; valid: auto, cpu, gpu, cuda"),
    (["+trainer.optim.lrr=0.1"], "nearest valid key: trainer.optim.lr"),
    (["+source.lr=0.1"], "nearest valid key: trainer.optim.lr"),
]


def _run(args, tmp_path):
    env = {**os.environ, "TRANSFER_CACHE_DIR": str(tmp_path / "cache")}
    cpu0, t0 = children_cpu(), time.perf_counter()
    r = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", env=env, timeout=120)
    return r, children_cpu() - cpu0, time.perf_counter() - t0


@pytest.mark.parametrize("args,line", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_keys_and_values_stop_the_run_in_one_line_before_any_work(args, line, tmp_path):
    r, cpu, _ = _run(args, tmp_path)
    assert r.returncode == 1 and line in r.stderr, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "cache").exists(), "nothing may be written to the cache"
    assert cpu < 2.0, f"{cpu:.2f} s of CPU: the check must come before any work"


def test_an_unreachable_tracking_server_stops_the_run_in_one_line(tmp_path):
    for args in (["logger=mlflow", "logger.tracking_uri=http://127.0.0.1:1"],  # on the command line
                 ["logger=mlflow", "logger.tracking_uri=http://user:pw@127.0.0.1:1"]):  # a password is not shown
        r, _, wall = _run(args, tmp_path)
        assert r.returncode == 1 and r.stderr.startswith("error: logger.tracking_uri=http://"), r.stderr[-2000:]
        assert "no server answers" in r.stderr and r.stderr.count("\n") == 1 and "pw" not in r.stderr
        assert wall < 10 and not (tmp_path / "cache").exists()


def test_a_tracking_server_set_in_a_config_file_is_checked_before_the_job(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from src.errors import ConfigError
    from src.tracking import check

    cfg = OmegaConf.create({"logger": {"name": "mlflow", "tracking_uri": "http://127.0.0.1:1"}})
    with pytest.raises(ConfigError, match="logger.tracking_uri=http://127.0.0.1:1: no server answers"):
        check(cfg)
