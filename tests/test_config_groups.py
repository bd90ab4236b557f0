"""Every option of every config group, every value an experiment or search overlay sweeps, composes and validates
(lightning-hydra-template style); the conf groups and the registries list the same things."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.check import Plan, validate
from src.data.tasks import SOURCES, TASKS
from src.errors import ConfigError
from src.models.registry import ARCHS
from src.probe.registry import CLASSIFIERS
from src.transferability.estimators import ESTIMATORS
from tests.conftest import REPO

# Validation only: nothing is trained or written, so no pre-trained source is copied into the test's cache.
pytestmark = pytest.mark.empty_cache
CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment", "search"))
# Target tasks and source kinds whose data are files: without them the config check fails with one line naming
# where it looked. (A pretrained source's weights file is looked for when its stage runs: tests/test_sources.py.)
TASKS_WITH_FILES = {"torchvision", "imagefolder"}
SOURCES_WITH_FILES = {"imagefolder", "torchvision_dataset"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    """One Hydra initialisation for the module (initialising per compose costs more than composing)."""
    with initialize_config_dir(str(CONF)):
        yield


def compose_cfg(*overrides: str, hydra: bool = False):
    return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def partners(group: str, option: str) -> list[str]:
    """What an option needs alongside it: the pretrained source a pretrained arch, a library net which model, and
    an arch without the default layer (fc6: resnets) one of its own."""
    if group == "arch" and option not in ARCHS:  # a preset of a library family (tv_*): a layer name it gives
        aliases = OmegaConf.load(CONF / "arch" / f"{option}.yaml").aliases
        return [] if "fc6" in aliases else [f"layer={list(aliases)[-1]}"]
    if group == "arch" and ARCHS[option].configured:  # a model library's net: which one, and a layer it has
        which = {"module": ["arch.builder=tests.fixtures.tiny:build", "arch.input_size=32"],
                 "backbone": ["arch.model=module:tests.fixtures.tiny:build", "arch.input_size=32"]}
        return [*which.get(option, ["arch.input_size=32"]), "layer=depth:1.0"]
    if group == "arch":
        taps = ARCHS[option].spec(None, 1.0, 10).taps()
        return [] if "fc6" in taps else [f"layer={taps[-2]}"]
    if group == "source" and SOURCES[OmegaConf.load(CONF / "source" / f"{option}.yaml").kind].loader is None:
        return ["arch=tv_alexnet"]
    return []


def data_overrides(cfg, no_data) -> list[str]:
    """For an option that reads files: ImageFolder roots that do not exist (torchvision datasets look under
    TRANSFER_DATA_DIR, which the `no_data` fixture points at an empty place)."""
    roots = [f"source.root={no_data / 'source'}"] if cfg.source.kind == "imagefolder" else []
    return roots + ([f"target.root={no_data / 'target'}"] if cfg.target.data.task == "imagefolder" else [])


def check(overrides: list[str], no_data) -> None:
    """A config without file-backed data validates; one with it fails with one line naming where it looked."""
    cfg = compose_cfg(*overrides)
    if not needs_files(cfg):
        assert isinstance(validate(cfg), Plan)
        return
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(*overrides, *data_overrides(cfg, no_data)))
    assert str(no_data) in str(e.value) and "\n" not in str(e.value), str(e.value)


def needs_files(cfg) -> bool:
    return cfg.target.data.task in TASKS_WITH_FILES or cfg.source.kind in SOURCES_WITH_FILES


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty data dir (paths.data_dir), so that nothing is read from or created in the repo's data/."""
    monkeypatch.setenv("TRANSFER_DATA_DIR", str(tmp_path / "no-data"))
    return tmp_path / "no-data"


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_a_group_composes_and_validates(group, cache_dir, no_data):
    assert options(group), group
    for option in options(group):
        check([f"{group}={option}", *partners(group, option)], no_data)


def sweep_values(spec) -> list[str]:
    """The values of a sweeper param: `a,b,c` (basic sweeper) or `choice(a, b)` (Optuna)."""
    text = str(spec).strip()
    m = re.fullmatch(r"choice\((.*)\)", text)
    return [v.strip() for v in (m.group(1) if m else text).split(",")]


@pytest.mark.parametrize("overlay", [f"{g}={o}" for g in ("experiment", "search") for o in options(g)])
def test_every_value_an_overlay_sweeps_validates(overlay, cache_dir, no_data):
    if overlay == "experiment=model_selection":  # its sweep is arch.models=[...], one job per backbone (src.argv)
        check([overlay, "arch.models=[module:tests.fixtures.tiny:build]", "arch.model=module:tests.fixtures.tiny:build",
               "arch.input_size=32"], no_data)
        return
    params = compose_cfg(overlay, hydra=True).hydra.sweeper.params
    assert params, overlay
    targets = sweep_values(params["target"]) if "target" in params else [None]
    swept = {key: sweep_values(spec) for key, spec in params.items() if key != "target"}  # targets: above
    for key, values in swept.items():
        # with the other params at their first value (dimred=pca is what gives dimred.n_components its meaning)
        others = [f"{k}={v[0]}" for k, v in swept.items() if k != key]
        for value in values:
            # The ends of a range meet every target the overlay sweeps (a PCA size a small target cannot give),
            # the values between them one target.
            for target in targets if value in (values[0], values[-1]) else targets[:1]:
                check([overlay, *others, f"{key}={value}", *([f"target={target}"] if target else [])], no_data)


def test_conf_groups_and_registries_agree():
    assert set(ARCHS) <= set(options("arch"))
    assert all(OmegaConf.load(CONF / "arch" / f"{a}.yaml").name == a for a in ARCHS)
    for preset in set(options("arch")) - set(ARCHS):  # tv_*: a library family with its keys set
        family = compose_cfg(f"arch={preset}").arch.name
        assert ARCHS[family].configured and "name" not in OmegaConf.load(CONF / "arch" / f"{preset}.yaml"), preset
    assert set(options("classifier")) == set(CLASSIFIERS)
    assert set(options("estimator")) == {"none", *ESTIMATORS}
    targets = [OmegaConf.load(p) for p in (CONF / "target").glob("*.yaml")]
    assert {t.data.task for t in targets} == set(TASKS)  # every task has a target, every target a task
    assert all(t.evaluator == TASKS[t.data.task].evaluator and t.metric in TASKS[t.data.task].metrics for t in targets)
    assert {OmegaConf.load(p).kind for p in (CONF / "source").glob("*.yaml")} == set(SOURCES)


def test_experiment_implements_every_registered_evaluator():
    """Every task's evaluator is a key of src.experiment's EVALUATORS table (read with ast: no torch import)."""
    import ast

    tree = ast.parse((REPO / "src" / "experiment.py").read_text())
    table = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "EVALUATORS")
    assert {t.evaluator for t in TASKS.values()} <= {k.value for k in table.keys}


def test_layer_and_pooling_are_plain_values_on_the_command_line(cache_dir):
    cfg = compose_cfg("arch=vgg", "depth=16", "layer=conv13", "pooling=spp")
    assert (cfg.layer, cfg.pooling) == ("conv13", "spp")
    assert validate(cfg).tap == "conv13"
    with pytest.raises(ConfigError, match="pooling='mean' is unknown; valid: avg, max, spp"):
        validate(compose_cfg("pooling=mean"))
