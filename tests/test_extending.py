"""Adding an architecture family, a target task or an estimator is one registered entry plus one config entry: a toy
family trains, is tapped at every layer, probed, fine-tuned and gets the measured distance; a toy task with an option
of its own and a toy estimator are scored; no other file is edited."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from torch import nn

from src.errors import ConfigError
from src.main import execute
from src.models.registry import ARCHS, Arch, register_arch
from src.models.spec import ArchSpec, scaled


def toy_spec(depth: int, width: float, num_classes: int) -> ArchSpec:
    """Two conv blocks and a linear head; `depth` 3 or 4 adds a third conv block."""
    channels = [scaled(32, width) * (i + 1) for i in range(depth - 1)]
    vocab = {f"block{i + 1}": (f"block{i + 1}", c, True) for i, c in enumerate(channels)}
    vocab["embed"] = ("embed", channels[-1], False)
    vocab["head"] = ("head", num_classes, False)
    return ArchSpec("toy", depth, num_classes, vocab, nodes={t: t for t in vocab}, head="head", min_input=8)


class Toy(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        c_in, blocks = 3, OrderedDict()
        for name, (_, c, spatial) in spec.vocab.items():
            if spatial:
                blocks[name] = nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                             nn.MaxPool2d(2))
                c_in = c
        for name, block in blocks.items():
            self.add_module(name, block)
        self.names = list(blocks)
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return self.head(self.embed(x))


@pytest.fixture
def toy_family():
    register_arch(Arch("toy", "a test family", toy_spec, "tests.test_extending:Toy", depths=(3, 4),
                       default_depth=3, distance_layer="block1"))
    ConfigStore.instance().store(group="arch", name="toy", node={"name": "toy"})  # conf/arch/toy.yaml's content
    try:
        yield
    finally:
        ARCHS.unregister("toy")


def test_a_registered_family_runs_end_to_end(toy_family, make_cfg, cache_dir, tmp_path):
    r = execute(make_cfg("arch=toy", "layer=block2"), tmp_path / "probe")
    m = r["metrics"]
    assert r["status"] == "ok" and r["cache"]["source_hit"] is False and r["factors"]["depth"] == 3
    assert m["feature_dim"] == 8 and m["distance"]["layer"] == "block1" and 0 <= m["distance"]["pad"] <= 2
    assert m["target_score"] > 0.25 + 0.1  # 4 target classes: chance is 0.25
    # Every tap from the one extraction; the deeper variant is a new source net.
    for layer in ("block1", "embed", "head"):
        assert execute(make_cfg("arch=toy", f"layer={layer}"), tmp_path / layer)["cache"]["features_hit"] is True
    deeper = execute(make_cfg("arch=toy", "depth=4", "layer=block3"), tmp_path / "deeper")
    assert deeper["cache"]["source_hit"] is False and deeper["metrics"]["feature_dim"] == 12
    # Fine-tuning finds the head through the record's spec.
    tuned = execute(make_cfg("arch=toy", "layer=embed", "finetune=last", "finetune.epochs=1"), tmp_path / "tuned")
    assert tuned["cache"]["finetune_hit"] is False and tuned["metrics"]["target_score"] is not None
    # Its vocabulary and depths are checked like any family's.
    with pytest.raises(ConfigError, match="valid layers: block1, block2, embed, head"):
        execute(make_cfg("arch=toy", "layer=fc7"), tmp_path / "bad")
    with pytest.raises(ConfigError, match="valid depths: 3, 4"):
        execute(make_cfg("arch=toy", "depth=5"), tmp_path / "bad2")


def test_a_name_is_registered_once(toy_family):
    with pytest.raises(ValueError, match="arch='toy' is already registered"):
        register_arch(Arch("toy", "again", toy_spec, "tests.test_extending:Toy", depths=(3,), default_depth=3,
                           distance_layer="block1"))
    with pytest.raises(ValueError, match="needs a builder and a distance_layer"):
        Arch("half", "no distance layer", toy_spec, "tests.test_extending:Toy")


# --- a target task and an estimator: likewise one registered entry plus one config entry each ---------------------

def stripes(d, size: int):
    """Toy task: the label is the orientation of a noisy grating (its own option: `stripe_period`)."""
    import numpy as np

    from src.data.synthetic import balanced_labels

    n_cls = int(d["num_classes"])
    labels = balanced_labels(n_cls, int(d["train_per_class"]) + int(d["val_per_class"]) + int(d["test_per_class"]),
                             int(d["seed"]))
    rng = np.random.default_rng(int(d["seed"]))
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = np.pi * labels / n_cls + rng.normal(0, 0.05, len(labels))
    phase = rng.uniform(0, 2 * np.pi, len(labels))
    wave = np.sin(2 * np.pi * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
                  * size / d["stripe_period"] + phase[:, None, None])
    img = 127.5 + 100 * wave + rng.normal(0, 20, wave.shape)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[:, None], 3, axis=1), labels


def fisher_ratio(features, labels) -> float:
    """Toy estimator: between-class over within-class variance of the features."""
    import numpy as np

    x, y = np.asarray(features, dtype=float), np.asarray(labels)
    means = np.stack([x[y == k].mean(0) for k in np.unique(y)])
    within = np.mean([x[y == k].var(0).sum() for k in np.unique(y)])
    return float(means.var(0).sum() / max(within, 1e-12))


@pytest.fixture
def toy_task_and_estimator():
    from src.data.registry import TASKS, register_task
    from src.fields import Int
    from src.transferability.estimators import ESTIMATORS, register_estimator

    register_task("stripes", validate=lambda cfg: None, describe=lambda d: "toy stripes",
                  fields={"stripe_period": Int(2, 64, "pixels per stripe")})(stripes)
    register_estimator("fisher_ratio", fisher_ratio, "features")
    store = ConfigStore.instance()
    store.store(group="target", name="toy_stripes", node={  # conf/target/toy_stripes.yaml's content
        "name": "toy_stripes", "group": "structured", "distance_rank": None, "metric": "accuracy",
        "evaluator": "classification", "data": {"task": "stripes", "num_classes": 4, "train_per_class": 12,
                                                "val_per_class": 6, "test_per_class": 12, "seed": 0,
                                                "stripe_period": 6}})
    store.store(group="estimator", name="fisher_ratio", node={"name": "fisher_ratio", "extra": []})
    try:
        yield
    finally:
        TASKS.unregister("stripes")
        ESTIMATORS.unregister("fisher_ratio")


def test_a_registered_task_and_estimator_run_end_to_end(toy_task_and_estimator, make_cfg, tmp_path):
    probe = execute(make_cfg("target=toy_stripes", "layer=conv3", tiny="source"), tmp_path / "probe")
    assert probe["metrics"]["target_score"] > 0.25 + 0.2  # orientation is easy for conv features
    assert probe["metrics"]["transferability"]["fisher_ratio"] > 0  # a cheap estimator: every probe records it
    est = execute(make_cfg("target=toy_stripes", "layer=conv3", "estimator=fisher_ratio", tiny="source"),
                  tmp_path / "estimate")
    assert est["metrics"]["target_score"] is None
    assert est["metrics"]["estimator_score"] == probe["metrics"]["transferability"]["fisher_ratio"]
    with pytest.raises(ConfigError, match=r"target.data.stripe_period=1 is out of range; valid: 2..64"):
        execute(make_cfg("target=toy_stripes", "target.data.stripe_period=1", tiny="source"), tmp_path / "bad")


# --- a family's own options, a classifier's own arguments, the user's own module ------------------------------------

def test_a_trained_familys_own_option_reaches_its_builder_and_its_cache_key(make_cfg):
    """`fields` of a trained family: checked like any key, handed to the builder in `spec.options`, and part of the
    source net's key (two variants are two nets, never one reused for the other)."""
    from src.check import validate
    from src.fields import Choice
    from src.keys import stage_keys

    register_arch(Arch("toyv", "a family with variants", lambda d, w, n: replace(toy_spec(d, w, n), family="toyv"),
                       "tests.test_extending:Toy", depths=(3, 4), default_depth=3, distance_layer="block1",
                       fields={"variant": Choice(("a", "b"), "which variant")}))
    ConfigStore.instance().store(group="arch", name="toyv", node={"name": "toyv", "variant": "a"})
    try:
        plans = {v: validate(make_cfg("arch=toyv", "layer=block1", f"arch.variant={v}")) for v in ("a", "b")}
        assert plans["a"].spec.options == {"variant": "a"} and plans["b"].spec.options == {"variant": "b"}
        keys = {v: stage_keys(make_cfg("arch=toyv", "layer=block1", f"arch.variant={v}"), p)["source"]
                for v, p in plans.items()}
        assert keys["a"] != keys["b"]
        with pytest.raises(ConfigError, match="arch.variant"):
            validate(make_cfg("arch=toyv", "layer=block1", "arch.variant=c"))
        # an option of the same name declared by another family as another type: refused at registration
        with pytest.raises(ValueError, match="option arch.variant is already declared by arch 'toyv'"):
            register_arch(Arch("toyw", "clash", toy_spec, "tests.test_extending:Toy", depths=(3,), default_depth=3,
                               distance_layer="block1", fields={"variant": Choice(("x", "y"), "other")}))
    finally:
        ARCHS.unregister("toyv")
    # families without options keep the keys they had (no "options" in the payload), and so does a run that
    # leaves `extensions` empty (its resume hash)
    from src.keys import source_payload
    from src.main import config_hash

    cfg = make_cfg()
    assert "options" not in source_payload(cfg, validate(cfg))
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert config_hash(plain) == config_hash({k: v for k, v in plain.items() if k != "extensions"})


def test_an_option_named_seed_is_not_taken_for_a_replicate_seed(make_cfg):
    """Replicates are grouped by their cost class (the source payload without its seeds): a family's own option
    that happens to be called seed builds another net, so it must stay in the class."""
    from src.check import validate
    from src.keys import cost_class
    from src.models.backbones import FIELDS

    register_arch(Arch("toys", "a family with a seed option", lambda d, w, n: replace(toy_spec(d, w, n), family="toys"),
                       "tests.test_extending:Toy", depths=(3,), default_depth=3, distance_layer="block1",
                       fields={"seed": FIELDS["seed"]}))  # the same declaration as the model libraries' arch.seed
    ConfigStore.instance().store(group="arch", name="toys", node={"name": "toys", "seed": 1})
    try:
        cfgs = [make_cfg("arch=toys", "layer=block1", f"arch.seed={s}") for s in (1, 2)]
        classes = {cost_class("source", c, validate(c)) for c in cfgs}
        assert len(classes) == 2
    finally:
        ARCHS.unregister("toys")


def test_a_classifier_declares_its_own_estimator_arguments(make_cfg):
    from src.check import validate
    from src.fields import Choice
    from src.probe.registry import CLASSIFIERS, register_classifier

    register_classifier("rbf_svm_test", about="an RBF SVC", fields={"kernel": Choice(("rbf", "poly"), "SVC's kernel")})
    ConfigStore.instance().store(group="classifier", name="rbf_svm_test", node={
        "name": "rbf_svm_test", "C_grid": [0.1, 1.0], "patience": None,
        "estimator": {"_target_": "sklearn.svm.SVC", "kernel": "rbf"}})
    try:
        validate(make_cfg("classifier=rbf_svm_test"))
        with pytest.raises(ConfigError, match="classifier.estimator.kernel"):
            validate(make_cfg("classifier=rbf_svm_test", "classifier.estimator.kernel=linear"))
    finally:
        CLASSIFIERS.unregister("rbf_svm_test")


def test_extensions_are_imported_before_the_check(make_cfg):
    """`extensions=[module]`: the user's module registers its entries in every process that checks a config."""
    from src.check import validate
    from src.transferability.estimators import ESTIMATORS

    try:
        validate(make_cfg("extensions=[tests.fixtures.extension]"))
        assert "spread_test" in ESTIMATORS
    finally:
        import sys

        ESTIMATORS.unregister("spread_test")
        sys.modules.pop("tests.fixtures.extension", None)  # (imported again by the next test that asks)
    with pytest.raises(ConfigError, match=r"^extensions: cannot import 'tests.fixtures.nope' \(ModuleNotFoundError"):
        validate(make_cfg("extensions=[tests.fixtures.nope]"))
    with pytest.raises(ConfigError, match=r"^extensions: cannot import 'tests.fixtures.nope' "):  # one, unbracketed
        validate(make_cfg("extensions=tests.fixtures.nope"))
    # A name no module registered: the registries' keys say where an entry of the user's own comes from.
    with pytest.raises(ConfigError, match=r"^estimator.name='spread_test' is unknown; valid: none, .* \(an entry of "
                                          r"your own: name the module that registers it in extensions=\[\.\.\.\]\)$"):
        validate(make_cfg("estimator.name=spread_test"))
    with pytest.raises(ConfigError, match=r"^pooling='nope' is unknown; valid: [a-z, ]+$"):  # not a registry: no hint
        validate(make_cfg("pooling=nope"))


# --- what the listings, the report and the bad-input lines know of a user's module ---------------------------------

ORDER_TASKS = {"near": (1, [0.50, 0.70, 0.90]), "mid": (2, [0.60, 0.70, 0.75]), "far": (3, [0.70, 0.65, 0.50]),
               "farthest": (4, [0.75, 0.60, 0.40])}  # scores at stem, body, head: the late layer's lead shrinks


def test_python_m_src_report_imports_the_sweeps_extensions_and_orders_their_layers(tmp_path):
    """`python -m src.report DIR` on a sweep of a family that only the sweep's `extensions` module registers: the
    report imports the module its record lists, and orders the family's layers in network order (stem, body, head;
    not as named, nor as the jobs ran) for the layer questions, also after the report's modules were imported."""
    import json

    import src.report.analysis  # noqa: F401  (imported before the family exists, as in a report's process)
    from src.report.build import build_report
    from src.report.study import import_sweep_extensions

    job = 0
    for target, (rank, scores) in ORDER_TASKS.items():
        for layer, score in reversed(list(zip(("stem", "body", "head"), scores))):  # jobs ran head first
            d = tmp_path / "sweep" / str(job)
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "order_test", "depth": 3, "layer": layer, "target": target,
                                            "group": "object", "distance_rank": rank},
                "metrics": {"target_score": score, "target_metric": "accuracy"}, "timings_s": {"total": 1.0}}))
            job += 1
    (tmp_path / "sweep" / "multirun.yaml").write_text("extensions:\n- tests.fixtures.extension_arch\nlayer: stem\n")
    try:
        out = build_report([tmp_path / "sweep"], tmp_path / "out", baseline={"layer": "head"}, plots=False)
        from src.models.registry import ARCHS

        assert "order_test" in ARCHS
        rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| near | ")]
        assert [r.split(" | ")[2] for r in rows][-3:] == ["stem", "body", "head"]
        gap = json.loads((out / "analysis.json").read_text())["findings"]["layer_gap_shrinks"]
        assert gap["estimate"] < 0  # head is the late layer: its lead shrinks with distance
    finally:
        import tests.fixtures.extension_arch as ext

        ext.forget()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "multirun.yaml").write_text("extensions: [tests.fixtures.nope]\n")
    [line] = import_sweep_extensions([tmp_path / "bad"])
    assert line.startswith("extensions: cannot import 'tests.fixtures.nope' (ModuleNotFoundError")


def test_a_family_whose_layer_names_clash_with_anothers_order_is_ordered_without_breaking_the_report():
    """A family of the user's own whose `pool` comes before `stage1` (resnet's follows `stage4`): the report's layer
    order keeps the first-registered family's order and still places the new family's other layers (a cycle used to
    fail every report of a process that had imported the family)."""
    from src.report import analysis as A

    def spec(depth, width, num_classes):
        vocab = {"stem_p": ("stem_p", 8, True), "pool": ("pool", 8, True), "stage1": ("stage1", 16, True),
                 "logits": ("logits", num_classes, False)}
        return ArchSpec("poolfirst_test", depth, num_classes, vocab, nodes={t: t for t in vocab}, head="logits",
                        min_input=8)

    register_arch(Arch("poolfirst_test", "pool before stage1", spec, "tests.test_extending:Toy", depths=(3,),
                       default_depth=3, distance_layer="stem_p"))
    try:
        assert A.sort_values("layer", ["logits", "pool", "stage1", "stem_p", "stage4"]) == [
            "stem_p", "stage1", "stage4", "pool", "logits"]
    finally:
        ARCHS.unregister("poolfirst_test")
    assert A.sort_values("layer", ["stage2", "stage1"]) == ["stage1", "stage2"]


def test_an_unknown_key_under_a_users_entry_is_answered_with_the_users_keys(tmp_path):
    """`target.data.dot_radiu=3` (no `+`) with the task's module in `extensions`: the nearest key is the task's own
    option, as with `+`; and an option of a task no module registered names the task, not some nearest key."""
    from hydra.errors import HydraException

    from src.check import validate
    from src.main import unknown_override
    from tests.conftest import compose_tiny

    try:
        with pytest.raises(HydraException) as e:
            compose_tiny("extensions=[tests.fixtures.extension_arch]", "target.data.dot_radiu=3")
        assert str(unknown_override(e.value)).startswith(
            "target.data.dot_radiu is not a config key; nearest valid key: target.data.dot_radius")
    finally:
        import tests.fixtures.extension_arch as ext

        ext.forget()
    with pytest.raises(HydraException) as e:
        compose_tiny("extensions=[tests.fixtures.nope]", "target.data.dot_radiu=3")
    assert str(unknown_override(e.value)).startswith("extensions: cannot import 'tests.fixtures.nope'")
    # the module left out of extensions: the task and the arch are what is unknown
    with pytest.raises(ConfigError, match=r"^target.data.task='dots_test' is unknown; valid: objects_new, "):
        validate(compose_tiny("target.data.task=dots_test", "+target.data.dot_radius=3",
                              f"paths.cache_dir={tmp_path}"))
    with pytest.raises(ConfigError, match=r"^arch.name='order_test' is unknown; valid: alexnet, "):
        validate(compose_tiny("arch.name=order_test", "+arch.variant=a", f"paths.cache_dir={tmp_path}"))


def test_a_distance_layer_outside_the_familys_layers_is_refused_by_the_check(tmp_path):
    from src.check import validate
    from tests.conftest import compose_tiny

    register_arch(Arch("toyd", "distance layer typo", lambda d, w, n: replace(toy_spec(d, w, n), family="toyd"),
                       "tests.test_extending:Toy", depths=(3, 4), default_depth=3, distance_layer="block9"))
    ConfigStore.instance().store(group="arch", name="toyd", node={"name": "toyd"})
    try:
        with pytest.raises(ConfigError, match=r"^arch=toyd depth=3 is registered with distance_layer='block9', not "
                                              r"one of its layers; valid: block1, block2, embed, head"):
            validate(compose_tiny("arch=toyd", "layer=block1", f"paths.cache_dir={tmp_path}"))
    finally:
        ARCHS.unregister("toyd")


def test_the_listings_show_a_users_family_and_targets(toy_family, tmp_path, capsys):
    """`python -m src.models arch=<a family of the user's>` prints its layers (the plain table lists it only with
    `extensions=`); `python -m src.data hydra.searchpath=[file://DIR]` lists DIR/target/*.yaml."""
    from src.data.__main__ import main as data_main
    from src.models.__main__ import main as models_main

    models_main(["arch=toy"])
    assert capsys.readouterr().out.split() == ["toy", "depth", "3", "block1", "block2", "embed", "head",
                                               "toy", "depth", "4", "block1", "block2", "block3", "embed", "head"]
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "mine.yaml").write_text(
        "name: mine_test\ngroup: object\ndistance_rank: null\nmetric: accuracy\nevaluator: classification\n"
        "data: {task: imagefolder}\n")
    data_main([f"hydra.searchpath=[file://{tmp_path}]"])
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mine_test ")]
    assert "ImageFolder tree" in row
    with pytest.raises(SystemExit, match=r"hydra.searchpath has 'file:///nonexistent_dir_test', not an existing "):
        data_main(["hydra.searchpath=[file:///nonexistent_dir_test]"])


def test_a_users_imagefolder_task_reuses_the_public_parts(make_cfg, tmp_path):
    """docs/extending.md's grey ImageFolder task: the imagefolder task's check, splits and identity are public, so a
    task of the user's own over a tree has the same checks and a cache key that follows the tree's images."""
    import numpy as np
    from PIL import Image

    from src.check import validate
    from src.data import imagefolder
    from src.data.registry import TASKS, register_task
    from src.data.tasks import check_imagefolder, folder_identity, imagefolder_splits, load_target
    from src.keys import stage_keys

    for split, n in (("train", 6), ("test", 2)):
        for c, colour in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
            (tmp_path / "tree" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(tmp_path / "tree" / split / c / f"{i}.png")

    @register_task("folder_gray", validate=check_imagefolder, describe=lambda d: "ImageFolder tree in grey",
                   identity=folder_identity(splits=True))
    def folder_gray(d, size):
        splits = imagefolder_splits(d, size)
        return {s: (x.mean(1, keepdims=True).repeat(3, 1).astype(x.dtype), y) for s, (x, y) in splits.items()}

    def features_key(cfg):
        imagefolder._TREES.clear()  # as a new process lists the tree
        return stage_keys(cfg, validate(cfg))["features"]

    try:
        given = ("target=imagefolder", f"target.root={tmp_path / 'tree'}", "target.data.task=folder_gray")
        cfg = make_cfg(*given, tiny="source")
        splits = load_target(cfg.target.data, image_size=8)
        x, y = splits["train"]
        assert len(y) + len(splits["val"][1]) == 12 and len(splits["test"][1]) == 4
        assert (x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()  # grey
        before = features_key(cfg)
        Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "tree" / "train" / "a" / "0.png")
        assert features_key(cfg) != before  # an image changed: the features are extracted again
        (tmp_path / "tree" / "test" / "c").mkdir()  # the imagefolder task's own check
        with pytest.raises(ConfigError, match=r"target.data.root: .*test has classes that .*train lacks: c"):
            validate(make_cfg(*given, tiny="source"))
    finally:
        TASKS.unregister("folder_gray")
