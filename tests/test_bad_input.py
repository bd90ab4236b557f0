"""Bad input, as a new user types it: one line naming the value and the valid range or fix, exit code 1, before any
expensive work, and nothing written to the cache dir.

Most cases are checked in-process (compose + the config check: what `python -m src.main` runs first, in
milliseconds); `test_cli_*` runs a few through the real CLI to prove that path prints the same one line.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.check import ConfigError, validate
from src.main import one_line
from tests.conftest import REPO, TINY, children_cpu, run_cli

# Each case must cost < 15 s. Measured as CPU time (ours, or the CLI child's), not wall time: on the shared 2-core
# machine neighbours' load stretches wall time several-fold without any change in the work a case does.
MAX_SECONDS = 15


def jpeg(path: Path, colour: int) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (colour, 255 - colour, 0)).save(path, "JPEG")
    return path


def tree(root: Path, classes: dict[str, int]) -> Path:
    """An ImageFolder tree: {class: n_images}."""
    for c, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            jpeg(root / name / f"{i}.jpg", 40 * c + i)
    return root


# (overrides, text the one-line message must contain). {tmp} is the test's tmp dir (see `fixtures` below).
CASES: list[tuple[str, str]] = [
    # source
    ("source.num_classes=1", "source.num_classes=1 is out of range; valid: 2..1000"),
    ("source.num_classes=0", "source.num_classes=0"),
    ("source.num_classes=5000", "source.num_classes=5000"),
    ("source.images_per_class=0", "source.images_per_class=0"),
    ("source.val_per_class=0", "source.val_per_class=0"),
    ("source.image_size=4", "source.image_size=4"),
    ("source.image_size=4096", "source.image_size=4096"),
    ("source.epochs=0", "source.epochs=0"),
    ("source.epochs=100000", "source.epochs=100000"),
    ("source.snapshot=0", "source.snapshot=0"),
    ("source.snapshot=9", "source.snapshot=9 is past source.epochs=2"),
    ("source.kind=foo", "source.kind='foo' is unknown"),
    ("source=imagefolder", "source.root is required (it is ??? in the config); set it, e.g. source.root=... "
                           "(imagefolder source: the ImageFolder tree)"),
    ("source=imagefolder source.root={tmp}/nowhere", "does not exist"),
    ("source=imagefolder source.root={tmp}/one_class", "needs 2 or more"),
    ("source=imagenet_torchvision", "needs a pretrained arch"),
    # architecture, width, layer, pooling
    ("width.multiplier=0", "width.multiplier=0"),
    ("width.multiplier=100", "width.multiplier=100"),
    ("arch=vgg depth=7", "depth"),
    ("layer=conv9", "valid layers"),
    ("pooling=median", "pooling='median' is unknown; valid: avg, max, spp"),
    # a model library's normalisation: one value per input channel (RGB), std > 0; found before the model is
    # described (no torch), not as a tensor-size error in the first extraction
    ("arch=timm arch.model=resnet18 arch.mean=[0.5,0.5]", "arch.mean=[0.5, 0.5] has 2 values; valid: one per input "
                                                          "channel, 3 (RGB), e.g. arch.mean=[0.5,0.5,0.5]"),
    ("arch=torchvision arch.std=[0.2,0.2,0.2,0.2]", "arch.std=[0.2, 0.2, 0.2, 0.2] has 4 values; valid: one per "
                                                    "input channel, 3 (RGB)"),
    ("arch=timm arch.model=resnet18 arch.std=[0.2,0.2,0]", "arch.std has 0; every entry must be > 0"),
    ("arch=timm arch.model=resnet18 arch.std=[0.2,-0.2,0.2]", "arch.std has -0.2; every entry must be > 0"),
    # trainer
    ("trainer.optim.name=foo", "trainer.optim.name='foo' is unknown; valid: sgd, adamw"),
    ("trainer.optim.lr=0", "trainer.optim.lr=0"),
    ("trainer.optim.lr=1e9", "trainer.optim.lr=1000000000.0 is out of range"),
    ("trainer.optim.momentum=-0.1", "trainer.optim.momentum=-0.1"),
    ("trainer.optim.momentum=1.5", "trainer.optim.momentum=1.5"),
    ("trainer.optim.weight_decay=-1", "trainer.optim.weight_decay=-1"),
    ("trainer.optim.batch_size=0", "trainer.optim.batch_size=0"),
    ("trainer.optim.label_smoothing=1", "trainer.optim.label_smoothing=1"),
    ("trainer.num_threads=0", "trainer.num_threads=0"),
    ("trainer.extract_batch_size=0", "trainer.extract_batch_size=0"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is unknown"),
    ("trainer.precision=8", "trainer.precision=8 is unknown"),
    # seed
    ("seed=-1", "seed=-1 is out of range; valid: 0..4294967295"),
    ("seed=abc", "seed='abc' must be an integer"),
    ("seed=99999999999", "seed=99999999999"),
    ("seed=1.5", "seed=1.5 must be an integer"),
    # probe
    ("classifier.C_grid=1", "classifier.C_grid=1 must be a non-empty list"),
    ("classifier.C_grid=[]", "classifier.C_grid=[] must be a non-empty list"),
    ("classifier.C_grid=[0,1]", "classifier.C_grid has 0"),
    ("classifier.C_grid=[-1]", "classifier.C_grid has -1"),
    ("dimred=pca dimred.n_components=0", "dimred.n_components=0"),
    ("dimred=pca dimred.n_components=5000", "dimred.n_components=5000 exceeds"),
    ("finetune=full finetune.lr=0", "finetune.lr=0"),
    ("finetune=full finetune.epochs=0", "finetune.epochs=0"),
    ("finetune=full estimator=logme", "cannot be combined"),
    # target
    ("target.data.num_classes=0", "target.data.num_classes=0"),
    ("target.data.num_classes=1", "target.data.num_classes=1 is out of range; valid: 2..1000"),
    ("target.data.train_per_class=1000000", "target.data.train_per_class=1000000 is out of range"),
    ("target=synth_retrieval target.data.num_instances=1", "target.data.num_instances=1"),
    ("target.data.train_per_class=0", "target.data.train_per_class=0"),
    ("target.data.val_per_class=0", "target.data.val_per_class=0"),
    ("target.data.test_per_class=0", "target.data.test_per_class=0"),
    ("target=synth_count target.data.num_classes=9", "valid: 1..4 objects"),
    ("target.data.train_examples=100000", "target.data.train_examples=100000 exceeds"),
    ("target.data.seed=-1", "target.data.seed=-1"),
    ("target=digits target.data.train_per_class=500", "digits splits ask for"),
    ("target=digits target.data.num_classes=12", "target.data.num_classes=12 for digits; valid: 2..10"),
    # an ImageFolder tree: a class named twice, test classes train lacks, PCA past its training images (2 here)
    ("target=imagefolder target.root={tmp}/two_class target.data.classes=[a,a]", "name a more than once"),
    ("target=imagefolder target.root={tmp}/split_extra", "has classes that {tmp}/split_extra/train lacks: c"),
    ("target=imagefolder target.root={tmp}/split_missing", "classes ['c'] are not in {tmp}/split_missing/test"),
    ("target=imagefolder target.root={tmp}/broken_link", "cannot read image {tmp}/broken_link/b/9.jpg"),
    ("source=imagefolder source.root={tmp}/broken_link", "source.root: cannot read image {tmp}/broken_link/b/9.jpg"),
    # a target's train/test tree as the source's one tree: its train/ and test/ read as classes; the line says which
    ("source=imagefolder source.root={tmp}/split_missing", "source.root: class folder {tmp}/split_missing/test has no "
     "images (.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp); {tmp}/split_missing holds train/ and test/: "
     "give {tmp}/split_missing/train (one tree, <class>/<image>)"),
    ("target=imagefolder target.root={tmp}/two_class", "class a has 2 images in {tmp}/two_class/a, none left to train"),
    ("target=imagefolder target.root={tmp}/five_each dimred=pca dimred.n_components=7",
     "dimred.n_components=7 exceeds what layer fc6 allows here: valid 1..6"),
    ("target.data.task=foo", "target.data.task='foo' is unknown"),
    # target.data.root reads target.root (${..root}): the line names the key to set, and the one that reads it
    ("target=imagefolder", "target.root is required (it is ??? in the config; target.data.root reads it); set it, "
                           "e.g. target.root=... (imagefolder target: the ImageFolder tree)"),
    ("target=imagefolder target.root={tmp}/nowhere", "does not exist"),
    ("target=imagefolder target.root={tmp}/one_class", "needs 2 or more"),
    ("target=imagefolder target.root={tmp}/empty_class", "has no images"),
    ("target=imagefolder target.root={tmp}/two_class target.data.classes=[nope]", "valid classes: a, b"),
    ("target=imagefolder target.root={tmp}/two_class target.data.val_fraction=0", "target.data.val_fraction=0"),
    ("target=cifar10 paths.data_dir={tmp}/no_data", "cifar10"),
    # paths
    ("paths.cache_dir=''", "paths.cache_dir='' is empty"),
    ("paths.cache_dir={tmp}/a_file", "is a file"),
    ("paths.cache_dir={tmp}/a_file/sub", "has a file in its path"),
    ("paths.cache_dir=/proc/nope/cache", "paths.cache_dir=/proc/nope/cache "),  # test_cache_dir_... says more
]


@pytest.fixture
def fixtures(tmp_path) -> Path:
    tree(tmp_path / "one_class", {"a": 2})
    tree(tmp_path / "two_class", {"a": 2, "b": 2})
    tree(tmp_path / "empty_class", {"a": 2, "b": 0})
    tree(tmp_path / "five_each", {"a": 5, "b": 5})  # 1 test and 1 val image held out of each: 3 each to train on
    tree(tmp_path / "split_missing" / "train", {"a": 2, "b": 2, "c": 2})
    tree(tmp_path / "split_missing" / "test", {"a": 1, "b": 1})
    tree(tmp_path / "broken_link", {"a": 5, "b": 5})
    (tmp_path / "broken_link" / "b" / "9.jpg").symlink_to(tmp_path / "nowhere.jpg")
    tree(tmp_path / "split_extra" / "train", {"a": 2, "b": 2})
    tree(tmp_path / "split_extra" / "test", {"a": 1, "b": 1, "c": 1})
    (tmp_path / "a_file").write_text("not a directory")
    return tmp_path


def compose_and_check(overrides: list[str]):
    with initialize_config_dir(str(REPO / "conf")):
        return validate(compose("config", overrides=overrides))


# Where each bounded field of the schema exists: the default config, or one of these choices.
WHERE = ["", "source=imagefolder source.root={tmp}/two_class", "target=synth_multilabel", "target=synth_retrieval",
         "target=synth_shift", "target=synth_finegrained", "target=synth_count", "target=synth_scenes",
         "target=imagefolder target.root={tmp}/two_class", "target=cifar10", "dimred=pca", "finetune=full",
         "classifier=linear_svm_liblinear", "classifier=linear_svm_ovo", "experiment=distance_study",
         "arch=module arch.builder=tests.fixtures.tiny:build arch.input_size=32"]


def out_of_range(field) -> list:
    """A value just below the field's valid range and, when it has an upper bound, one above it."""
    integer = field.kind == "int"
    bad = [field.low if field.low_open else field.low - 1]
    if field.high is not None and math.isfinite(field.high):
        bad.append(field.high + 1 if integer else field.high * 2 + 1)
    return [int(v) if integer else v for v in bad]


def has(cfg, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def test_every_bounded_field_is_refused_outside_its_range(fixtures):
    """Each numeric key the schema bounds (src/schema.py, with the keys registry entries declare), in a config
    where it exists, set just below and above its range: one ConfigError line naming the key, the value and the
    valid range."""
    from src.schema import declared

    bounded = {k: f for k, f in declared().items() if f.kind in ("int", "float") and f.low is not None and "[]" not in k}
    assert len(bounded) >= 45
    with initialize_config_dir(str(REPO / "conf")):
        composed = [compose("config", overrides=[o.replace("{tmp}", str(fixtures)) for o in w.split()]) for w in WHERE]
        for key, field in bounded.items():
            base = next((cfg for cfg in composed if has(cfg, key)), None)
            assert base is not None, f"{key} exists in no config the test knows: {WHERE}"
            for value in out_of_range(field):
                cfg = copy.deepcopy(base)
                OmegaConf.update(cfg, key, value)
                with pytest.raises(ConfigError) as e:
                    validate(cfg)
                line = str(e.value)
                assert f"{key}={value} is out of range; valid: {field.valid()}" in line and "\n" not in line, (
                    key, value, line)


@pytest.mark.empty_cache
@pytest.mark.parametrize("overrides,expected", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_before_any_work(fixtures, cache_dir, overrides, expected):
    args = [o.replace("{tmp}", str(fixtures)) for o in overrides.split()]
    # The tiny sizes are keys of the synthetic source and targets only.
    other_source = any(a.startswith("source=") for a in args)
    other_target = any(a.startswith(("target=imagefolder", "target=cifar", "target=synth_retrieval")) for a in args)
    drop = ("source." if other_source else "@", "target." if other_target else "@")
    base = [o for o in TINY if not o.startswith(drop)]
    t0 = time.process_time()
    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)) as e:
        compose_and_check(base + args)
    assert time.process_time() - t0 < MAX_SECONDS
    line = one_line(e.value)
    assert expected.replace("{tmp}", str(fixtures)) in line and "\n" not in line
    assert isinstance(e.value, ConfigError), f"a ConfigError, not {type(e.value).__name__}: {line}"
    assert not cache_dir.exists()  # nothing was written to the cache


STUDIES = "experiment=depth_study, distance_study, diversity_density, early_stopping, layer_study, width_study"


@pytest.mark.parametrize("overrides,expected", [
    # a typo without `+`: the nearest valid key, the line `+source.num_clases=10` gets from the config check
    ("source.num_clases=10", "source.num_clases is not a config key; nearest valid key: source.num_classes "),
    ("sead=3", "sead is not a config key; nearest valid key: seed "),
    # the same last part: in the key's own group first (it was source.max_per_class, which changes the source)
    ("target.max_per_class=5", "target.max_per_class is not a config key; nearest valid key: "
                               "target.data.max_per_class "),
    ("target.classes=[cat]", "target.classes is not a config key; nearest valid key: target.data.classes "),
    # a key that only experiment presets set: where it is valid, and the `+` that adds it without one
    ("report.min_seeds=1", f"report.min_seeds is not in this config: {STUDIES} set it (report.min_seeds=1 "
                           "overrides it there; without one, add it with +report.min_seeds=1)"),
    # a key of other targets: this target's keys there, and its own name for it
    ("target=synth_multilabel target.data.train_per_class=12",
     "target.data.train_per_class is not a key of target=synth_multilabel; valid keys of target.data: task, "
     "num_classes, train_images, val_images, test_images, family_seed, seed (nearest: target.data.train_images); "
     "target.data.train_per_class belongs to target=digits, synth_attributes, "),
    ("source.root=/data/x", "source.root is not a key of source=synthetic; valid keys of source: name, kind, "),
    # a node of the user's own keys: the `+` that adds one
    ("arch=timm arch.kwargs.img_size=64", "arch.kwargs.img_size: arch.kwargs holds keys of your own, not in the "
                                          "config until added; add this one with +arch.kwargs.img_size=64"),
])
def test_override_of_a_key_the_config_lacks_is_one_line_naming_where_it_is_valid(overrides, expected):
    """Hydra's "Could not override 'key'. To append ... use +key=..." (what a plain key=value whose key the
    composed config lacks gets) becomes the config check's line (src.main.unknown_override, which the CLI prints)."""
    from src.main import unknown_override

    with initialize_config_dir(str(REPO / "conf")):
        with pytest.raises(HydraException) as e:
            compose("config", overrides=overrides.split())
        line = str(unknown_override(e.value))
        assert line.startswith(expected) and "\n" not in line, line
        if "not a config key" in expected:  # the same line as the `+` form's (the config check's)
            with pytest.raises(ConfigError) as plus:
                validate(compose("config", overrides=["+" + overrides]))
            assert str(plus.value) == line
        assert compose("config", overrides=["experiment=depth_study", "report.min_seeds=1"]).report.min_seeds == 1
    with initialize_config_dir(str(REPO / "conf")), pytest.raises(HydraException) as e:  # Hydra's own keys: its line
        compose("config", overrides=["hydra.sweeper.n_trial=3"], return_hydra_config=True)
    assert unknown_override(e.value) is None


def test_defaults_and_tiny_config_pass(make_cfg):
    assert validate(make_cfg()).snapshot == 2 and validate(make_cfg(tiny=False)).snapshot == 10


# --- Detected later, still one line naming the file or the setting ------------------------------------------


def test_corrupt_and_truncated_images_are_named(tmp_path):
    from src.data.imagefolder import UnreadableImageError, load_imagefolder

    root = tree(tmp_path / "t", {"a": 2, "b": 2})
    good = (root / "a" / "0.jpg").read_bytes()
    for bad, content in (("b/1.jpg", good[: len(good) // 3]), ("a/1.jpg", b"\xff\xd8 not a jpeg at all")):
        (root / bad).write_bytes(content)
        with pytest.raises(UnreadableImageError) as e:
            load_imagefolder(root, None, None, 32, 0)
        assert str(root / bad) in str(e.value) and "\n" not in one_line(e.value)
        jpeg(root / bad, 7)


def test_weights_of_another_arch_name_the_file(make_cfg, cache_dir, tmp_path):
    import torch
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match=f"arch.weights={path} does not fit torchvision:alexnet .missing keys: "
                                          "features.0.weight") as e:
        validate(make_cfg("arch=tv_alexnet", f"arch.weights={path}"))
    assert "\n" not in str(e.value)
    # Not a torch checkpoint: a text file renamed .pth, a pickle that would run code, an empty file. One complete
    # line naming the key, the file and what it is not, with at most torch's first sentence (not its paragraphs).
    for content, torch_says in ((b"garbage", "(UnpicklingError|KeyError|RuntimeError)"),
                                (b"just some notes\nsaved as a .pth by mistake\n", "(UnpicklingError|KeyError)"),
                                (b'cos\nsystem\n(S"true"\ntR.', r"UnpicklingError: Weights only load failed\.\)"),
                                (b"", "EOFError")):
        path.write_bytes(content)
        with pytest.raises(ConfigError) as e:
            validate(make_cfg("arch=tv_alexnet", f"arch.weights={path}"))
        line = str(e.value)
        assert re.fullmatch(f"arch.weights={path} is not a readable PyTorch checkpoint \\({torch_says}.*; give a "
                            r"state dict saved by torch.save \(.pth .pt .bin\) or a .safetensors file", line), line
        assert "\n" not in line and "PyTorch 2.6" not in line and len(line) < 400


def test_cache_dir_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    """/proc looks writable (os.access says yes to root) but refuses a new directory: the check tries one (in the
    deepest existing parent, removed at once) and names the key, the value and why, or the env var that set it."""
    from src.check import check_writable_dir

    expected = r"(cannot be created \(/proc refuses a new directory: .+\)|is not writable \(/proc is read-only)"
    with pytest.raises(ConfigError, match=f"^paths.cache_dir=/proc/nope {expected}") as e:
        check_writable_dir("paths.cache_dir", "/proc/nope", env="TRANSFER_CACHE_DIR")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("TRANSFER_CACHE_DIR", "/proc/nope")
    with pytest.raises(ConfigError, match=f"^paths.cache_dir=/proc/nope .set by TRANSFER_CACHE_DIR. {expected}"):
        check_writable_dir("paths.cache_dir", "/proc/nope", env="TRANSFER_CACHE_DIR")
    check_writable_dir("paths.cache_dir", tmp_path / "a" / "cache", env="TRANSFER_CACHE_DIR")
    assert list(tmp_path.iterdir()) == []  # the probe is gone, nothing was created


@pytest.mark.parametrize("argv,expected", [
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is out of range; valid: 1..100000"),
    (["hydra.sweeper.n_trials=many"], "hydra.sweeper.n_trials=.many. must be an integer"),
    # joblib refuses 0 workers only once the sweep dir exists; negatives are cores + 1 + n
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is not a number of workers; "
                                                           "valid: a positive integer, or a negative one"),
    (["hydra.launcher.n_jobs=two"], "hydra.launcher.n_jobs=two is not a number of workers"),
])
def test_sweeper_overrides(argv, expected):
    from src.argv import check_sweeper_overrides

    with pytest.raises(ConfigError, match=expected) as e:
        check_sweeper_overrides(argv)
    assert "\n" not in str(e.value)
    check_sweeper_overrides(["hydra.launcher.n_jobs=-1", "hydra.launcher.n_jobs=4"])


@pytest.mark.parametrize("argv,expected", [
    # an Optuna search's settings that fail only once its trials have run, checked on the composed config
    (["search=factors_pareto", "hydra.sweeper.direction=maximize"],
     "hydra.sweeper.direction=maximize gives 1 direction(s) for 2 objective(s) (objective=[val_score,probe_dim]); "
     "give one per objective, in order, each one of minimize, maximize"),
    (["search=factors_tpe", "objective=[val_score,probe_dim]"], "hydra.sweeper.direction=maximize gives 1 "),
    (["search=factors_tpe", "hydra.sweeper.direction=maximise"],
     "hydra.sweeper.direction='maximise' is unknown; valid: minimize, maximize"),
    (["search=factors_tpe", "hydra.sweeper.sampler.n_startup_trials=-1"],
     "hydra.sweeper.sampler.n_startup_trials=-1 is out of range; valid: >= 0"),
    # a study file in a directory that does not exist: SQLite says only `unable to open database file`, late
    (["search=factors_tpe", "hydra.sweeper.storage=sqlite:////nonexistent_dir/optuna.db"],
     "hydra.sweeper.storage=sqlite:////nonexistent_dir/optuna.db: directory /nonexistent_dir does not exist"),
    # the override grammar and its sweep functions: the override and the parser's own sentence, not its token list
    (["-m", "seed=range(0,3,0)"], "seed=range(0,3,0) is not a valid sweep: range() arg 3 must not be zero"),
    (["-m", "seed=range(3,0)"], "seed=range(3,0) sweeps no values"),
    (["-m", "layer=fc6,,fc7"], "layer=fc6,,fc7 is not a valid override: extraneous input ',' (the override grammar"),
])
def test_command_line_refused_before_hydra(argv, expected):
    """`src.argv.prepare` (before Hydra writes a sweep dir or opens a study) refuses these in one line."""
    from src.argv import prepare

    with pytest.raises(ConfigError) as e:
        prepare(argv, {})
    assert str(e.value).startswith(expected) and "\n" not in str(e.value) and len(str(e.value)) < 300, str(e.value)


def test_good_search_settings_pass():
    from src.argv import prepare

    assert prepare(["search=factors_pareto"], {}) == ["search=factors_pareto", "hydra.mode=MULTIRUN"]
    prepare(["search=factors_tpe", "objective=[val_score,probe_dim]", "hydra.sweeper.direction=[maximize,minimize]",
             "hydra.sweeper.sampler.n_startup_trials=0", "-m", "seed=range(0,3)"], {})


def test_a_hydra_setting_of_the_wrong_type_names_the_type():
    """Hydra's "Error merging override k=v" with OmegaConf's reason, which names the type the key takes."""
    with initialize_config_dir(str(REPO / "conf")), pytest.raises(HydraException) as e:
        compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.mem_gb=lots"], return_hydra_config=True)
    assert one_line(e.value) == ("Error merging override hydra.launcher.mem_gb=lots: Value 'lots' of type 'str' could "
                                 "not be converted to Integer")


def test_workers_refuse_an_unknown_preset_before_starting_any(tmp_path, capsys):
    from src.search.workers import main as workers_main

    with pytest.raises(SystemExit) as e:
        workers_main(["2", "search=factors_tpee", f"hydra.sweep.dir={tmp_path / 'w'}"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: python -m src.search.workers: search=factors_tpee is not a search preset; valid: "
                          "search=factors_pareto, search=factors_tpe")
    assert not (tmp_path / "w").exists()


def test_models_listing_with_a_bad_arch_is_the_main_cli_line():
    """`python -m src.models arch=alexnett`: the line `python -m src.main arch=alexnett` prints, not a traceback."""
    from src.models.__main__ import main as models_main

    with pytest.raises(SystemExit) as e:
        models_main(["arch=alexnett"])
    assert str(e.value).startswith("error: In 'config': Could not find 'arch/alexnett'; Available options in 'arch': "
                                   "alexnet, ") and "\n" not in str(e.value)


def test_report_out_that_is_a_file_is_named(tmp_path, capsys):
    from src.report.__main__ import main as report_main

    (tmp_path / "s" / "0").mkdir(parents=True)
    (tmp_path / "a_file").write_text("x")
    for out in (tmp_path / "a_file", tmp_path / "a_file" / "sub"):
        with pytest.raises(SystemExit) as e:
            report_main([str(tmp_path / "s"), "--out", str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 1 and err == (f"error: python -m src.report: --out {out}: {tmp_path / 'a_file'} is a "
                                             f"file, not a directory; give a directory (created if missing)\n")
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["0"]  # nothing written


def test_tracking_uri_with_a_scheme_mlflow_cannot_open_is_named():
    pytest.importorskip("mlflow")
    from src.tracking import check

    cfg = OmegaConf.create({"logger": {"name": "mlflow", "tracking_uri": "ftp://nowhere"}})
    with pytest.raises(ConfigError, match=r"^logger.tracking_uri=ftp://nowhere: MLflow has no tracking store for "
                                          r"ftp://; valid schemes: .*file, http, https, .*sqlite") as e:
        check(cfg)
    assert "\n" not in str(e.value)
    check(OmegaConf.create({"logger": {"name": "mlflow", "tracking_uri": "sqlite:////tmp/x/mlflow.db"}}))


def test_storage_url_with_an_unknown_driver_is_one_line_without_the_password():
    from src.storage_url import StorageError, prepare_storage_args

    env: dict[str, str] = {}
    with pytest.raises(StorageError, match="no driver 'postgresql.nosuchdriver'") as e:
        prepare_storage_args(["hydra.sweeper.storage=postgresql+nosuchdriver://u:pw@host/db"], env)
    assert "pw" not in str(e.value) and "\n" not in str(e.value)  # the password went to PGPASSWORD, not the message


def test_report_on_bad_dirs_is_one_line_and_leaves_no_report_dir(tmp_path):
    from src.report.__main__ import main as report_main

    (tmp_path / "empty").mkdir()
    for d in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(SystemExit) as e:
            report_main([str(d)])
        assert str(e.value).startswith("error: ") and "\n" not in str(e.value)
        assert not (d / "report").exists()
    (tmp_path / "s" / "0").mkdir(parents=True)
    (tmp_path / "s" / "0" / "result.json").write_text("[1, 2]")  # JSON, but not a result
    report_main([str(tmp_path / "s")])
    assert "unreadable" in (tmp_path / "s" / "report" / "results.csv").read_text()


@pytest.mark.parametrize("module", ["src.report.summary", "src.report"])
def test_summary_and_report_commands_on_bad_dirs_exit_1_with_one_line(tmp_path, module):
    """`python -m src.report.summary DIR` fails as `python -m src.report DIR` does: a missing dir or one without a
    result.json is one `error:` line and exit code 1 (not a warning and exit 0), and nothing is written."""
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    for d, expected in ((tmp_path / "missing", f"error: {tmp_path / 'missing'} does not exist; give"),
                        (tmp_path / "empty", f"error: no result.json under {tmp_path / 'empty'}")):
        r = subprocess.run([sys.executable, "-m", module, str(d)], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith(expected), (r.returncode, r.stderr)
    assert [p.name for p in tmp_path.rglob("*")] == ["empty"]  # no summary.csv, no report/


# --- The real CLI: one line on stderr, exit code 1, nothing in the cache ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("args,expected", [
    (["source.num_classes=1"], "error: source.num_classes=1 is out of range; valid: 2..1000"),
    (["classifier.C_grid=1"], "error: classifier.C_grid=1 must be a non-empty list"),
    (["arch=foo"], "error: In 'config': Could not find 'arch/foo'; Available options in 'arch': alexnet, backbone, module, resnet, timm, "
                     "torchvision, tv_alexnet"),
    (["search=factors_tpe", "hydra.sweeper.n_trials=0"], "error: hydra.sweeper.n_trials=0 is out of range"),
    (["arch=timm", "arch.model=resnet18", "arch.mean=[0.5,0.5]"], "error: arch.mean=[0.5, 0.5] has 2 values; "
                                                                    "valid: one per input channel, 3 (RGB)"),
    (["source.num_clases=10"], "error: source.num_clases is not a config key; nearest valid key: source.num_classes "),
    (["report.min_seeds=1"], "error: report.min_seeds is not in this config: experiment=depth_study, "),
    (["target=imagefolder"], "error: target.root is required (it is ??? in the config; target.data.root reads it)"),
    (["TRANSFER_CACHE_DIR=/proc/nope"], "error: paths.cache_dir=/proc/nope (set by TRANSFER_CACHE_DIR) "),
    (["source=imagefolder", "source.root={tmp}/corrupt"],
     "error: UnreadableImageError: cannot read image {tmp}/corrupt/b/1.jpg"),
    # the model-selection study on the default synthetic target would answer nothing the user asked
    (["experiment=model_selection", "arch.models=[timm:resnet18]"], "error: experiment=model_selection needs target= "),
    (["experiment=model_selection", "target=digits", "arch.models=[timm:resnet18,foo:resnet18]"],
     "error: arch.models[1]='foo:resnet18' is not a backbone reference; valid: library:model[@weights]"),
    (["experiment=model_selection", "target=digits", "arch.models=[file:{tmp}/none.safetensors]"],
     "error: arch.models[0]=file:{tmp}/none.safetensors: no such file"),
    # a sweep whose every job fails the config check: one line, not a sweep of failure records that exits 0
    (["-m", "layer=conv9,fc99"], "error: layer='conv9' does not exist in arch=alexnet depth=8; valid layers: "),
    # a glob selects among a config group's options; over a value it selects none: a sweep of no job
    (["-m", "layer=glob(fc*)"], "error: the sweep has no job: layer=glob(fc*) expands to no value"),
])
def test_cli_prints_one_line_and_exits_1(tmp_path, args, expected):
    root = tree(tmp_path / "corrupt", {"a": 3, "b": 3})
    (root / "b" / "1.jpg").write_bytes((root / "b" / "0.jpg").read_bytes()[:200])  # truncated
    cache = tmp_path / "cache"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {"TRANSFER_CACHE_DIR": str(cache)} | dict(a.split("=", 1) for a in args if a.startswith("TRANSFER_"))
    args = [a for a in args if not a.startswith("TRANSFER_")]  # an environment variable, not an argument
    t0, cpu0 = time.perf_counter(), children_cpu()
    r = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env,
                timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(expected.replace("{tmp}", str(tmp_path))), lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    cpu = children_cpu() - cpu0
    print(f"{args}: wall {time.perf_counter() - t0:.1f}s, cpu {cpu:.1f}s")
    assert cpu < MAX_SECONDS
    assert not [p for p in cache.rglob("*") if not p.is_dir()]  # no file: no lock, staging dir or entry
    assert not (tmp_path / "sweep").exists()  # nor a sweep dir


@pytest.mark.slow
def test_cli_optuna_study_whose_trials_all_failed(tmp_path):
    """Optuna's own "Record does not exist" (no best trial) becomes a line saying what happened and where to look."""
    r = run_cli("search=factors_tpe", "hydra.sweeper.n_trials=2", "source.num_classes=1",
                f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                env={"TRANSFER_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 1 and errors == r.stderr.strip().splitlines()[-1:], r.stderr[-3000:]
    assert errors[0].startswith("error: every trial of the Optuna study failed") and "Traceback" not in r.stderr
    failed = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/result.json")]
    assert len(failed) == 2 and all("source.num_classes=1" in f["error"]["message"] for f in failed)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("mode,key", [([], "hydra.run.dir"), (["-m", "layer=fc6,fc7"], "hydra.sweep.dir")])
def test_an_output_dir_that_cannot_be_made_is_one_line_naming_its_key(tmp_path, mode, key):
    (tmp_path / "a_file").write_text("")
    r = run_cli(*mode, f"{key}={tmp_path}/a_file/out", env={"TRANSFER_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 1 and r.stderr.strip() == (f"error: {key}={tmp_path}/a_file/out has a file in its path "
                                                      f"({tmp_path}/a_file); point it at a directory"), r.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("argv", [
    ["-cd", "/tmp/conf=copy", "--cfg", "job"],  # a flag's value with '=' is not an override
    ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=${oc.env:NJ}", "layer=fc6,fc7"],  # resolved later
    ["search=factors_tpe", "hydra.sweeper.storage=sqlite:///${oc.env:HOME}/s.db"],
    ["-m", "seed=range(0,4294967295)"],  # checked by its first value, not listed whole
    ["-m", "layer=glob(fc*)", "hydra.run.dir=out/${now:%H-%M}", "+extra=[a,b]", "~logger", "++seed=3"],
])
def test_commands_hydra_accepts_pass_the_early_checks(argv):
    from src.argv import prepare

    assert set(argv) <= set(prepare(list(argv), {}))  # not refused, nothing dropped


def test_an_image_folders_hidden_directories_are_not_classes(tmp_path):
    tree(tmp_path / "t" / "train", {"a": 3, "b": 3})
    tree(tmp_path / "t" / "test", {"a": 1, "b": 1})
    (tmp_path / "t" / "test" / ".ipynb_checkpoints").mkdir()  # a notebook's, not a class the train split lacks
    base = [o for o in TINY if not o.startswith("target.")]
    assert compose_and_check(base + ["target=imagefolder", f"target.root={tmp_path}/t"]) is not None
