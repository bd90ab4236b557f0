import pytest

from src.check import ConfigError, validate
from tests.conftest import children_cpu, run_cli

# A CLI run that fails at the config check stops before any expensive work: a few CPU seconds at most
# (tests/conftest.children_cpu, without the imports the CLI server did once; that the check imports no torch is
# test_cfg_job_and_help_do_not_import_torch and tests/test_layering.py).
MAX_CPU_SECONDS = 15


def test_default_config_is_valid(make_cfg):
    plan = validate(make_cfg(tiny=False))
    assert plan.tap == "fc6" and plan.snapshot == 10 and plan.feature_dim == 1024


def test_missing_values_are_named_as_omegaconf_finds_them(make_cfg):
    """The cheap scan before OmegaConf's walk finds every kind of ??? the walk finds (plain, nested, in a list, an
    interpolation to one); a config without any needs no walk."""
    from omegaconf import OmegaConf

    from src.check import missing_keys

    assert missing_keys(make_cfg()) == []
    cfg = OmegaConf.create({"a": 1, "b": {"c": "???"}, "d": [1, "???"], "e": "${b.c}", "f": "x"})
    assert missing_keys(cfg) == sorted(OmegaConf.missing_keys(cfg)) == ["b.c", "d[1]", "e"]
    cfg = make_cfg()
    cfg.target.data.seed = "???"
    with pytest.raises(ConfigError, match=r"^target.data.seed is required \(it is \?\?\? in the config\)"):
        validate(cfg)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["layer=conv8"], "valid layers: conv1, conv2, conv3, conv4, conv5, conv_last, fc6, fc7, fc8"),
        (["arch=vgg", "depth=8", "layer=conv6"], "valid layers: conv1, conv2, conv3, conv4, conv5, conv_last"),
        (["arch=vgg", "depth=12"], "valid depths: 8, 11, 13, 16, 19"),
        (["arch=alexnet", "depth=11"], "valid depths: 8"),
        (["dimred=pca", "dimred.n_components=100"], r"dimred.n_components=100 exceeds .* valid 1..48"),
        (["dimred=pca", "dimred.n_components=0"], "dimred.n_components=0 is out of range; valid: 1..100000"),
        (["source.num_classes=0"], "source.num_classes=0 is out of range; valid: 2..1000"),
        (["source.images_per_class=-3"], "source.images_per_class=-3 is out of range; valid: 1..100000"),
        (["target.data.train_per_class=0"], "target.data.train_per_class=0 is out of range; valid: 1..100000"),
        (["width.multiplier=0"], "width.multiplier=0 is out of range; valid: > 0 and <= 4"),
        (["source.snapshot=5"], r"source.snapshot=5 is past source.epochs=2; valid: 1..2"),
        (["arch=vgg", "source.image_size=16"], "source.image_size=16 is too small for arch=vgg"),
        (["target=synth_count", "target.data.num_classes=6"], "valid: 1..4"),
        (["classifier.C_grid=[]"], "classifier.C_grid"),
        (["classifier.patience=0"], "classifier.patience=0 is out of range; valid: 1..1000, or null"),
        (["target.metric=f1"], "target.metric='f1' is unknown; valid: accuracy, mean_per_class_accuracy, map"),
        (["target.metric=map"], "target.metric=map does not fit target.data.task=objects_new; valid: accuracy, "
                                "mean_per_class_accuracy"),
    ],
)
def test_bad_input_fails_with_one_clear_line(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(make_cfg(*overrides))
    assert "\n" not in str(err.value)


def test_pca_limit_is_feature_dim_when_that_is_smaller(make_cfg):
    # tiny alexnet conv_last has 32 channels; 48 target training images.
    with pytest.raises(ConfigError, match=r"valid 1..32 \(feature dim 32"):
        validate(make_cfg("layer=conv_last", "dimred=pca", "dimred.n_components=40"))
    validate(make_cfg("layer=conv_last", "pooling=spp", "dimred=pca", "dimred.n_components=40"))


@pytest.mark.empty_cache
@pytest.mark.slow
def test_cli_bad_layer_fails_fast_listing_layers(cache_dir):
    cpu0 = children_cpu()
    r = run_cli("layer=nope")
    assert r.returncode != 0 and children_cpu() - cpu0 < MAX_CPU_SECONDS
    assert "fc6" in r.stderr and "conv_last" in r.stderr  # Hydra lists the group's options


@pytest.mark.empty_cache
@pytest.mark.slow
def test_cli_layer_the_arch_lacks_names_its_layers(cache_dir):
    cpu0 = children_cpu()
    r = run_cli("layer=conv9")
    assert r.returncode != 0 and children_cpu() - cpu0 < MAX_CPU_SECONDS
    assert "error: layer='conv9' does not exist in arch=alexnet depth=8; valid layers: conv1" in r.stderr
    assert not cache_dir.exists()  # nothing was trained


@pytest.mark.slow
def test_cfg_job_and_help_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        "sys.argv = ['src.main', '--cfg', 'job']\n"
        "runpy.run_module('src.main', run_name='__main__')\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "NO_TORCH" in r.stdout and "layer:" in r.stdout
    r = run_cli("--help")
    for group in ("arch: alexnet, backbone, module, resnet, timm, torchvision, tv_alexnet, tv_resnet50, tv_vgg16, vgg",
                  "width: large, medium, small, tiny",
                  "dimred: none, pca", "search: factors_pareto, factors_tpe", "target:"):
        assert group in r.stdout


def test_task_table_lists_every_target_with_metadata():
    from src.data.__main__ import task_rows

    rows = {r["target"]: r for r in task_rows()}
    assert {"synth_objects_new", "synth_scenes", "synth_finegrained", "synth_attributes", "synth_count",
            "synth_retrieval", "digits", "cifar10", "imagefolder"} <= set(rows)
    groups = {"object", "scene", "finegrained", "attribute", "structured", "retrieval", "shift"}
    assert all(r["group"] in groups for r in rows.values())
    # synth_shift's distance is numeric (target.data.shift), not a rank; every other target has a rank.
    assert rows["synth_shift"]["distance_rank"] is None
    assert all(isinstance(r["distance_rank"], int) for t, r in rows.items() if t != "synth_shift")
    assert rows["synth_retrieval"]["metric"] == "map" and rows["synth_retrieval"]["evaluator"] == "retrieval"


def test_a_target_outside_the_allowed_packages_is_refused_at_the_check(make_cfg):
    """The probe instantiates config-named classes only from scikit-learn, src.probe and the user's extensions:
    another is refused in one line by the check, not when the job reaches its probe."""
    with pytest.raises(ConfigError, match=r"^classifier.estimator._target_='os.system' is not allowed; valid: a "
                                          r"class under sklearn.\*, src.probe.\*"):
        validate(make_cfg("classifier.estimator._target_=os.system"))
    with pytest.raises(ConfigError, match=r"^dimred.estimator._target_='builtins.eval' is not allowed"):
        validate(make_cfg("dimred=pca", "dimred.estimator._target_=builtins.eval"))
    # a class in a module the config lists in extensions is the user's own
    validate(make_cfg("extensions=[tests.fixtures.tiny]", "classifier.estimator._target_=tests.fixtures.tiny.Clf"))
