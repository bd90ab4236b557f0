"""Source and target datasets as in-memory uint8 arrays, with fixed seeded splits.

A dataset here is a dict of splits, each split an (images, labels) pair: images uint8 (N, 3, H, W),
labels int64 (N,). The source task has `train` and `val`; a target task has `train`, `val` and `test`.
Everything is torch-free and deterministic given the config.

Synthetic targets come from the same generator as the source, at a controlled distance from it:
  objects_new  novel prototypes of the source's family (new classes, same kind of visual evidence)
  finegrained  subtle variants of a single prototype
  attributes   the label is the colour pair; shape and texture are random nuisances
  count        the label is how many objects (1..4) are in the image
  scenes       two objects per image; the label is which pair co-occurs
  retrieval    instances under new pose/scale/lighting: `query` and `database` splits, labels = instance ids
  multilabel   1-3 objects per image; the label is which of the prototypes are present (scored by mAP)
  shift        new prototypes whose distributions move from the source's toward another world by `shift` in
               [0, 1] (src/data/shift.py): a numeric, controlled distance
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from src.data import synthetic as syn
from src.data.splits import hold_out as _hold_out, stratified_split
from src.data.imagefolder import check_classes, tree_digest
from src.data.registry import SOURCES, TASKS, register_pretrained_source, register_source, register_task
from src.data.shift import SHIFT_RANGE
from src.errors import ConfigError
from src.fields import Float, Int

Split = tuple[np.ndarray, np.ndarray]
SOURCE_FAMILY_SEED = 0


def stored_by_name(d: dict[str, Any]) -> dict[str, Any]:
    """A torchvision dataset is the dataset it names, wherever it is stored and however it got there: moving
    paths.data_dir or setting download keeps its cache keys."""
    return {k: v for k, v in d.items() if k not in ("root", "download")}


def folder_identity(splits: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The identity of an ImageFolder tree: where it is (resolved) and the images it holds there (`tree_digest`;
    `splits`: a target's train/ and test/, a source has none). The path alone would serve a tree whose images
    changed the old features, the listing alone could take two trees of same-named, same-sized images with
    normalised times (archives, containers) for one."""
    import os

    def identity(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "root": os.path.realpath(d["root"]), "images": tree_digest(d["root"], d.get("classes"), splits)}

    return identity


def _split_sizes(d: Mapping[str, Any]) -> dict[str, int | None]:
    return {"train": d["train_per_class"], "val": d["val_per_class"], "test": d.get("test_per_class")}


def _counts_total(d: Mapping[str, Any]) -> int:
    return int(d["train_per_class"]) + int(d["val_per_class"]) + int(d["test_per_class"])


# --- config validation of each task (`cfg` is the composed config; returns the training images if known) -----

DIGITS_MIN_PER_CLASS = 174  # the rarest digit in scikit-learn's set has 174 images


def _per_class_task(extra: Callable[[Any], None] | None = None, test_optional: bool = False):
    """Validator of a task split `*_per_class` (plus a task-specific `extra` check on `target.data`)."""

    def validate(cfg) -> int:
        data = cfg.target.data
        if data.test_per_class is None and not test_optional:
            raise ConfigError("target.data.test_per_class=null is only valid for digits; set a number of images")
        if extra is not None:
            extra(data)
        n_train = data.train_per_class * data.num_classes
        if data.get("train_examples") is None:
            return n_train
        if data.train_examples > n_train:
            raise ConfigError(f"target.data.train_examples={data.train_examples} exceeds the task's {n_train} "
                              f"training images; valid: 1..{n_train}")
        return data.train_examples

    return validate


def _check_count(data) -> None:
    if data.num_classes > 4:
        raise ConfigError(f"target.data.num_classes={data.num_classes} for the count task; valid: 1..4 objects")


def _check_scenes(data) -> None:
    k = data.get("num_objects", 5)
    if data.num_classes > k * (k - 1) // 2:
        raise ConfigError(
            f"target.data.num_classes={data.num_classes} for scenes of {k} objects; valid: 1..{k * (k - 1) // 2}"
        )


def _check_digits(data) -> None:
    if data.num_classes > 10:
        raise ConfigError(f"target.data.num_classes={data.num_classes} for digits; valid: 2..10 (the digits 0 to "
                          f"num_classes - 1)")
    asked = data.train_per_class + data.val_per_class + (data.test_per_class or 0)
    if asked > DIGITS_MIN_PER_CLASS:
        raise ConfigError(f"digits splits ask for {asked} images per class; the set has at least {DIGITS_MIN_PER_CLASS}")


def _check_retrieval(cfg) -> int:
    data = cfg.target.data
    return data.num_instances * data.database_per_instance


def _check_multilabel(cfg) -> int:
    data = cfg.target.data
    if data.num_classes < 3:
        raise ConfigError(f"target.data.num_classes={data.num_classes} for multilabel; valid: 3 or more")
    return data.train_images


def check_imagefolder(cfg) -> int:
    """The tree's classes (and, with train/ and test/, that test/ holds no class train/ lacks); returns the number
    of training images the task will have (the images listed, capped and held out as `imagefolder_splits` does),
    so the config check can bound PCA's components before anything is built. Public, with `imagefolder_splits`
    and `folder_identity`: a task of the user's own that reads an ImageFolder tree reuses all three
    (docs/extending.md)."""
    from pathlib import Path

    from src.data.imagefolder import image_count, list_classes

    data = cfg.target.data
    root = Path(data.root)
    both = (root / "train").is_dir() and (root / "test").is_dir()
    split_root = root / "train" if both else root
    try:
        names = check_classes(split_root, data.classes)
        if both:
            extra = sorted(set(list_classes(root / "test")) - set(names)) if not data.classes else []
            if extra:  # their images would be dropped from the test split without a word
                raise ValueError(f"{root / 'test'} has classes that {split_root} lacks: {', '.join(extra)}; add "
                                 f"them to train/ or choose classes with target.data.classes")
            check_classes(root / "test", names)  # each class has test images (the loader asks the same)
        tree_digest(root, data.classes)  # (what the cache keys read next) every image can be opened: no broken link
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"target.data.root: {e}") from None
    cap = data.get("max_per_class")
    counts = [min(image_count(split_root / n), cap if cap is not None else math.inf) for n in names]  # (listed above)
    y = np.repeat(np.arange(len(counts)), counts)
    if not both:
        y = y[_hold_out(y, data.get("test_fraction") or 0.2, data.seed + 1)["rest"]]
    train = np.bincount(y[_hold_out(y, data.get("val_fraction") or 0.2, data.seed)["rest"]], minlength=len(names))
    if train.min() < 1:
        name = names[int(train.argmin())]
        raise ConfigError(f"target.data.root: class {name} has {counts[int(train.argmin())]} images in "
                          f"{split_root / name}, none left to train on once the val"
                          f"{'' if both else ' and test'} images are held out; add images")
    return int(train.sum())


def _check_torchvision(cfg) -> None:
    from src.data.torchvision_sets import DATASETS, open_split

    data = cfg.target.data
    for split in DATASETS[data.dataset][1]:  # fail now, not after training a source net
        open_split(data.dataset, data.root, split, data.get("download", False))
    return None


def _describe_per_class(d) -> str:
    test = "rest" if d.get("test_per_class") is None else d.test_per_class
    return f"{d.task}: {d.num_classes} classes, {d.train_per_class}/{d.val_per_class}/{test} per class"


# --- synthetic task builders: (data cfg, image size) -> (images, labels) over all splits -----------------


@register_task("objects_new", validate=_per_class_task(), describe=_describe_per_class)
def _objects_new(d: Mapping[str, Any], size: int) -> Split:
    protos = syn.make_prototypes(d["num_classes"], family_seed=d.get("family_seed", 1))
    labels = syn.balanced_labels(d["num_classes"], _counts_total(d), d["seed"])
    return syn.render_single(protos, labels, size, seed=d["seed"]), labels


@register_task("finegrained", validate=_per_class_task(), describe=_describe_per_class,
               fields={"strength": Float(0, 1, "how far the variants move from their prototype")})
def _finegrained(d: Mapping[str, Any], size: int) -> Split:
    base = syn.make_prototypes(1, family_seed=d.get("family_seed", 2))
    protos = syn.perturb_prototype(base, d["num_classes"], d.get("strength", 0.35), seed=d["seed"])
    labels = syn.balanced_labels(d["num_classes"], _counts_total(d), d["seed"])
    return syn.render_single(protos, labels, size, seed=d["seed"]), labels


@register_task("attributes", validate=_per_class_task(), describe=_describe_per_class)
def _attributes(d: Mapping[str, Any], size: int) -> Split:
    """Label = the fill colour pair; each image takes a random shape/texture from a pool of 64 prototypes."""
    colours = syn.make_prototypes(d["num_classes"], family_seed=d.get("family_seed", 3)).colour
    labels = syn.balanced_labels(d["num_classes"], _counts_total(d), d["seed"])
    pool = syn.make_prototypes(64, family_seed=d.get("family_seed", 3) + 1000)
    rng = np.random.default_rng([d["seed"], 5])
    protos = pool.take(rng.integers(0, len(pool), len(labels)))
    protos = syn.Prototypes(**{**protos.__dict__, "colour": colours[labels]})
    return syn.render_single(protos, np.arange(len(labels)), size, seed=d["seed"]), labels


@register_task("count", validate=_per_class_task(_check_count), describe=_describe_per_class,
               fields={"pool_size": Int(1, 10_000, "prototypes the objects are drawn from")})
def _count(d: Mapping[str, Any], size: int) -> Split:
    """Label = number of objects minus one; objects are random source-family prototypes."""
    n_max = int(d["num_classes"])
    labels = syn.balanced_labels(n_max, _counts_total(d), d["seed"])
    rng = np.random.default_rng([d["seed"], 11])
    protos = syn.make_prototypes(d.get("pool_size", 20), family_seed=SOURCE_FAMILY_SEED)
    slot_labels = rng.integers(0, len(protos), (len(labels), 4))
    present = np.arange(4)[None, :] <= labels[:, None]
    return syn.render_multi(protos, slot_labels, present, size, seed=d["seed"]), labels


@register_task("scenes", validate=_per_class_task(_check_scenes), describe=_describe_per_class,
               fields={"num_objects": Int(2, 64, "objects whose pairs are the classes")})
def _scenes(d: Mapping[str, Any], size: int) -> Split:
    """Label = which pair of objects co-occurs (C(k, 2) classes from k prototypes), placed in random cells."""
    from itertools import combinations

    pairs = np.array(list(combinations(range(d.get("num_objects", 5)), 2)))
    protos = syn.make_prototypes(d.get("num_objects", 5), family_seed=d.get("family_seed", 4))
    labels = syn.balanced_labels(d["num_classes"], _counts_total(d), d["seed"])
    present = np.ones((len(labels), 2), dtype=bool)
    return syn.render_multi(protos, pairs[labels], present, size, seed=d["seed"]), labels


@register_task("retrieval", validate=_check_retrieval, evaluator="retrieval", metrics=("map",),
               describe=lambda d: f"{d.num_instances} instances: {d.database_per_instance} database + {d.queries_per_instance} query views")
def _retrieval(d: Mapping[str, Any], size: int) -> dict[str, Split]:
    """Instance retrieval: `num_instances` objects, each a fixed prototype *and* fixed colours (no colour jitter),
    seen `database_per_instance` times in the database and `queries_per_instance` times as queries, under new
    position, scale, rotation, lighting (brightness) and clutter. Labels are instance ids."""
    n_inst = d["num_instances"]
    protos = syn.make_prototypes(n_inst, family_seed=d.get("family_seed", 6))
    nuis = syn.Nuisance(colour_jitter=0.0, brightness=(0.6, 1.4))
    out = {}
    for i, (split, per) in enumerate((("database", d["database_per_instance"]), ("query", d["queries_per_instance"]))):
        labels = np.repeat(np.arange(n_inst), per)
        out[split] = (syn.render_single(protos, labels, size, seed=d["seed"] * 100 + i, nuis=nuis), labels)
    return out


@register_task("multilabel", validate=_check_multilabel, metrics=("map",),
               describe=lambda d: f"multilabel: {d.num_classes} labels, {d.train_images}/{d.val_images}/{d.test_images} images")
def _multilabel(d: Mapping[str, Any], size: int) -> dict[str, Split]:
    """Multi-label objects (like PASCAL VOC classification): 1-3 of `num_classes` prototypes per image; the label
    is the (N, num_classes) 0/1 presence matrix. Splits are `train_images`/`val_images`/`test_images` images."""
    k = int(d["num_classes"])
    protos = syn.make_prototypes(k, family_seed=d.get("family_seed", 8))
    sizes = {"train": d["train_images"], "val": d["val_images"], "test": d["test_images"]}
    rng = np.random.default_rng([d["seed"], 13])
    n = sum(sizes.values())
    n_obj = rng.integers(1, 4, n)
    slot_labels = np.argsort(rng.random((n, k)), axis=1)[:, :3]  # three distinct prototypes per image
    present = np.arange(3)[None, :] < n_obj[:, None]
    labels = np.zeros((n, k), dtype=np.int64)
    np.put_along_axis(labels, slot_labels, present.astype(np.int64), axis=1)
    images = syn.render_multi(protos, slot_labels, present, size, seed=d["seed"])
    out, start = {}, 0
    for name, m in sizes.items():
        out[name] = (images[start : start + m], labels[start : start + m])
        start += m
    return out


@register_task("shift", validate=_per_class_task(),
               fields={"shift": Float(*SHIFT_RANGE, "distance from the source's world (0) to another (1)")},
               describe=lambda d: f"shift {d.shift} (0..1): {_describe_per_class(d)}")
def _shift(d: Mapping[str, Any], size: int) -> Split:
    """The synth_shift family: distance from the source = `shift` in [0, 1] (src/data/shift.py)."""
    from src.data.shift import build_shift_task

    return build_shift_task(d, size)


def _first_digits(d: dict[str, Any]) -> dict[str, Any]:
    # Fewer than ten classes once read all ten digits: such entries are not these tasks' (ten keep their keys).
    return d if d["num_classes"] == 10 else {**d, "digits": "0 to num_classes - 1"}


@register_task("digits", validate=_per_class_task(_check_digits, test_optional=True), describe=_describe_per_class,
               identity=_first_digits)
def _digits(d: Mapping[str, Any], size: int) -> Split:
    """scikit-learn's bundled 8x8 handwritten digits 0 to num_classes - 1, upsampled (bilinear) to the input size,
    grey as RGB."""
    from PIL import Image
    from sklearn.datasets import load_digits

    ds = load_digits()
    keep = ds.target < d["num_classes"]
    small = (ds.images[keep] / 16.0 * 255).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in small])
    return np.repeat(big[:, None], 3, axis=1), ds.target[keep].astype(np.int64)


@register_task("imagefolder", validate=check_imagefolder, describe=lambda d: "ImageFolder tree (target.root)",
               identity=folder_identity(splits=True))
def imagefolder_splits(d: Mapping[str, Any], size: int) -> dict[str, Split]:
    """`root/train` + `root/test` ImageFolder trees, or one tree from which a seeded test split is held out.

    Val is held out of train (`val_fraction` of the smallest class, per class); likewise test (`test_fraction`).
    """
    from pathlib import Path

    from src.data.imagefolder import load_imagefolder

    root, seed = Path(d["root"]), d["seed"]
    classes, cap = d.get("classes"), d.get("max_per_class")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, names = load_imagefolder(root / "train", classes, cap, size, seed)
        test = load_imagefolder(root / "test", names, d.get("max_test_per_class"), size, seed)[:2]
    else:
        x, y, _ = load_imagefolder(root, classes, cap, size, seed)
        idx = _hold_out(y, d.get("test_fraction") or 0.2, seed + 1)
        test, x, y = (x[idx["held"]], y[idx["held"]]), x[idx["rest"]], y[idx["rest"]]
    idx = _hold_out(y, d.get("val_fraction") or 0.2, seed)
    return {"train": (x[idx["rest"]], y[idx["rest"]]), "val": (x[idx["held"]], y[idx["held"]]), "test": test}


@register_task("torchvision", validate=_check_torchvision,
               describe=lambda d: f"torchvision {d.dataset} (paths.data_dir)", identity=stored_by_name)
def _torchvision(d: Mapping[str, Any], size: int) -> dict[str, Split]:
    from src.data.torchvision_sets import load_dataset_target  # imports torchvision: only when asked for

    return load_dataset_target(d, size)


def load_target(data_cfg: Mapping[str, Any], image_size: int) -> dict[str, Split]:
    """The train/val/test splits of a target task (sizes per class from the config, seeded)."""
    task = data_cfg["task"]
    if task not in TASKS:
        raise ValueError(f"target task={task!r} is unknown; valid tasks: {', '.join(TASKS)}")
    built = TASKS[task].builder(data_cfg, image_size)
    if isinstance(built, dict):  # the task comes with its own splits
        return built
    images, labels = built
    parts = stratified_split(labels, _split_sizes(data_cfg), data_cfg["seed"])
    if data_cfg.get("train_examples"):
        # VTAB-style low-data protocol: a fixed seeded subset of the train split (val and test unchanged).
        n = int(data_cfg["train_examples"])
        train = parts["train"]
        if n > len(train):
            raise ValueError(f"train_examples={n} exceeds the {len(train)} training images of the task")
        parts["train"] = np.sort(np.random.default_rng([data_cfg["seed"], 41]).choice(train, n, replace=False))
    return {name: (images[idx], labels[idx]) for name, idx in parts.items()}


def load_source(src_cfg: Mapping[str, Any], seed: int) -> dict[str, Split]:
    """The source task's train/val splits (the loader registered for `source.kind`)."""
    return SOURCES[src_cfg["kind"]].loader(src_cfg, seed)


# --- source kinds: loader (source cfg, seed) -> train/val splits, and validation -> number of classes --------


def _check_synthetic_source(cfg) -> int:
    return cfg.source.num_classes


@register_source("synthetic", validate=_check_synthetic_source)
def _synthetic_source(src_cfg: Mapping[str, Any], seed: int) -> dict[str, Split]:
    """`num_classes` prototypes, `images_per_class` train + `val_per_class` val images each."""
    n_cls, n_train, n_val = src_cfg["num_classes"], src_cfg["images_per_class"], src_cfg["val_per_class"]
    protos = syn.make_prototypes(n_cls, family_seed=SOURCE_FAMILY_SEED)
    labels = syn.balanced_labels(n_cls, n_train + n_val, seed)
    images = syn.render_single(protos, labels, src_cfg["image_size"], seed=seed)
    parts = stratified_split(labels, {"train": n_train, "val": n_val}, seed)
    return {name: (images[idx], labels[idx]) for name, idx in parts.items()}


def _check_imagefolder_source(cfg) -> int:
    try:
        n = len(check_classes(cfg.source.root, cfg.source.classes))
        tree_digest(cfg.source.root, cfg.source.classes, splits=False)  # (what the keys read next): no broken link
        return n
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"source.root: {e}") from None


@register_source("imagefolder", validate=_check_imagefolder_source, identity=folder_identity(splits=False))
def _imagefolder_source(src_cfg: Mapping[str, Any], seed: int) -> dict[str, Split]:
    """`root`'s classes (or the `classes` subset), at most `max_per_class` each, `val_per_class` held out."""
    from src.data.imagefolder import load_imagefolder

    x, y, _ = load_imagefolder(
        src_cfg["root"], src_cfg.get("classes"), src_cfg.get("max_per_class"), src_cfg["image_size"], seed
    )
    parts = stratified_split(y, {"val": src_cfg["val_per_class"], "train": None}, seed)
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def _check_torchvision_source(cfg) -> int:
    from src.data.torchvision_sets import DATASETS, _labels, open_split

    src = cfg.source
    if "train" not in DATASETS[src.dataset][1]:
        raise ConfigError(f"source.dataset={src.dataset} has no official train split; use it as a target")
    return int(_labels(open_split(src.dataset, src.root, "train", src.get("download", False))).max() + 1)


@register_source("torchvision_dataset", validate=_check_torchvision_source, identity=stored_by_name)
def _torchvision_source(src_cfg: Mapping[str, Any], seed: int) -> dict[str, Split]:
    from src.data.torchvision_sets import load_split

    x, y = load_split(src_cfg["dataset"], src_cfg["root"], "train", src_cfg["image_size"],
                      src_cfg.get("max_per_class"), seed, src_cfg.get("download", False))
    parts = stratified_split(y, {"val": src_cfg["val_per_class"], "train": None}, seed)
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def _check_pretrained_source(cfg) -> int:
    if cfg.source.snapshot is not None:
        raise ConfigError(f"source.snapshot={cfg.source.snapshot} is meaningless for pretrained weights; leave it null")
    return 1000  # ImageNet's classes


# Pretrained ImageNet weights (source=imagenet_torchvision): nothing to load or train here.
register_pretrained_source("torchvision", validate=_check_pretrained_source)
