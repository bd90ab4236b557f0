"""Config validation before any expensive work (no torch import: it runs in a fraction of a second).

`validate(cfg)` checks a composed config against the architecture registry (`src.models.spec`) and the
data sizes, and returns a `Plan` with what the stages need (resolved depth, canonical tap, snapshot, feature
dimension). Every problem raises `ConfigError` with one line naming the bad value and the valid choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from src.data.imagefolder import check_classes
from src.models.spec import FAMILY_DEPTHS, POOLINGS, TORCHVISION_ARCHS, ArchSpec, arch_spec

KNOWN_TASKS = ("objects_new", "finegrained", "attributes", "count", "scenes", "retrieval", "multilabel", "digits",
               "imagefolder", "torchvision")
EVALUATORS = ("classification", "retrieval")
DIGITS_MIN_PER_CLASS = 174  # the rarest digit in scikit-learn's set has 174 images
METRICS = ("accuracy", "mean_per_class_accuracy")  # classification; retrieval targets use "map"


class ConfigError(ValueError):
    """A composed config that cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class Plan:
    spec: ArchSpec
    tap: str  # canonical tap name (aliases such as conv_last resolved)
    snapshot: int  # epoch whose weights are used
    feature_dim: int  # dimension of the chosen layer after pooling


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number")


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


SOURCE_KINDS = ("synthetic", "imagefolder", "torchvision_dataset", "torchvision")


def _check_source(cfg: DictConfig) -> int:
    """Validate the source group; returns the source task's number of classes (the net's output size)."""
    src = cfg.source
    if src.kind not in SOURCE_KINDS:
        raise ConfigError(f"source.kind={src.kind!r} is unknown; valid kinds: {', '.join(SOURCE_KINDS)}")
    pretrained_arch = cfg.arch.name in TORCHVISION_ARCHS
    if src.kind == "torchvision":
        if not pretrained_arch:
            raise ConfigError(
                f"source={src.name} needs a pretrained arch; valid: {', '.join(TORCHVISION_ARCHS)} (got arch={cfg.arch.name})"
            )
        if src.snapshot is not None:
            raise ConfigError(f"source.snapshot={src.snapshot} is meaningless for pretrained weights; leave it null")
        _positive_int("source.image_size", src.image_size)
        return 1000
    if pretrained_arch:
        raise ConfigError(
            f"arch={cfg.arch.name} is a pretrained torchvision net; use it with source=imagenet_torchvision, "
            f"or pick an arch trained here: {', '.join(FAMILY_DEPTHS)}"
        )
    for field in ("val_per_class", "image_size", "epochs"):
        _positive_int(f"source.{field}", src[field])
    _positive_int("trainer.optim.batch_size", cfg.trainer.optim.batch_size)
    _positive("trainer.optim.lr", cfg.trainer.optim.lr)
    if src.kind == "synthetic":
        _positive_int("source.num_classes", src.num_classes)
        _positive_int("source.images_per_class", src.images_per_class)
        return src.num_classes
    _positive_int("source.max_per_class", src.max_per_class, allow_none=True)
    if src.kind == "torchvision_dataset":
        from src.data.torchvision_sets import DATASETS, _labels, open_split

        if src.dataset not in DATASETS:
            raise ConfigError(f"source.dataset={src.dataset!r} is unknown; valid: {', '.join(DATASETS)}")
        if "train" not in DATASETS[src.dataset][1]:
            raise ConfigError(f"source.dataset={src.dataset} has no official train split; use it as a target")
        return int(_labels(open_split(src.dataset, src.root, "train", src.get("download", False))).max() + 1)
    try:
        return len(check_classes(src.root, src.classes))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"source.root: {e}") from None


def _check_target(cfg: DictConfig) -> int | None:
    """Validate the target group; returns its number of training images when known without reading it."""
    tgt, data = cfg.target, cfg.target.data
    if data.task not in KNOWN_TASKS:
        raise ConfigError(f"target.data.task={data.task!r} is unknown; valid tasks: {', '.join(KNOWN_TASKS)}")
    if tgt.evaluator not in EVALUATORS:
        raise ConfigError(f"target.evaluator={tgt.evaluator!r} is unknown; valid evaluators: {', '.join(EVALUATORS)}")
    metrics = ("map",) if tgt.evaluator == "retrieval" or data.task == "multilabel" else METRICS
    if tgt.metric not in metrics:
        raise ConfigError(f"target.metric={tgt.metric!r} is unknown; valid metrics: {', '.join(metrics)}")
    if (tgt.evaluator == "retrieval") != (data.task == "retrieval"):
        raise ConfigError(f"target.evaluator={tgt.evaluator} does not fit target.data.task={data.task}")
    if data.task == "retrieval":
        for field in ("num_instances", "database_per_instance", "queries_per_instance"):
            _positive_int(f"target.data.{field}", data[field])
        return data.num_instances * data.database_per_instance
    if data.task == "torchvision":
        from src.data.torchvision_sets import DATASETS, open_split

        if data.dataset not in DATASETS:
            raise ConfigError(f"target.data.dataset={data.dataset!r} is unknown; valid: {', '.join(DATASETS)}")
        for split in DATASETS[data.dataset][1]:  # fail now, not after training a source net
            open_split(data.dataset, data.root, split, data.get("download", False))
        return None
    if data.task == "multilabel":
        for field in ("num_classes", "train_images", "val_images", "test_images"):
            _positive_int(f"target.data.{field}", data[field])
        if data.num_classes < 3:
            raise ConfigError(f"target.data.num_classes={data.num_classes} for multilabel; valid: 3 or more")
        return data.train_images
    if data.task == "imagefolder":
        root = data.root
        split_root = f"{root}/train" if os.path.isdir(f"{root}/train") and os.path.isdir(f"{root}/test") else root
        try:
            check_classes(split_root, data.classes)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"target.data.root: {e}") from None
        _positive_int("target.data.max_per_class", data.max_per_class, allow_none=True)
        return None
    _positive_int("target.data.num_classes", data.num_classes)
    _positive_int("target.data.train_per_class", data.train_per_class)
    _positive_int("target.data.val_per_class", data.val_per_class)
    _positive_int("target.data.test_per_class", data.test_per_class, allow_none=data.task == "digits")
    if data.task == "count" and data.num_classes > 4:
        raise ConfigError(f"target.data.num_classes={data.num_classes} for the count task; valid: 1..4 objects")
    if data.task == "scenes":
        k = data.get("num_objects", 5)
        if data.num_classes > k * (k - 1) // 2:
            raise ConfigError(
                f"target.data.num_classes={data.num_classes} for scenes of {k} objects; valid: 1..{k * (k - 1) // 2}"
            )
    if data.task == "digits":
        asked = data.train_per_class + data.val_per_class + (data.test_per_class or 0)
        if asked > DIGITS_MIN_PER_CLASS:
            raise ConfigError(
                f"digits splits ask for {asked} images per class; the set has at least {DIGITS_MIN_PER_CLASS}"
            )
    n_train = data.train_per_class * data.num_classes
    if data.get("train_examples") is not None:
        _positive_int("target.data.train_examples", data.train_examples)
        if data.train_examples > n_train:
            raise ConfigError(
                f"target.data.train_examples={data.train_examples} exceeds the task's {n_train} training images; "
                f"valid: 1..{n_train}"
            )
        return data.train_examples
    return n_train


def _check_finetune(cfg: DictConfig) -> None:
    ft = cfg.finetune
    if ft.name == "none":
        return
    if ft.name not in ("last", "full"):
        raise ConfigError(f"finetune={ft.name!r} is unknown; valid: none, last, full")
    for field in ("epochs", "batch_size"):
        _positive_int(f"finetune.{field}", ft[field])
    _positive("finetune.lr", ft.lr)
    if cfg.estimator.name != "none":
        raise ConfigError(f"estimator={cfg.estimator.name} scores features without training; it cannot be combined "
                          f"with finetune={ft.name}")


def validate(cfg: DictConfig) -> Plan:
    src = cfg.source
    _positive("width.multiplier", cfg.width.multiplier)
    n_classes = _check_source(cfg)
    try:
        spec = arch_spec(cfg.arch.name, cfg.depth, cfg.width.multiplier, n_classes)
        tap = spec.resolve(cfg.layer.name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.pooling.name not in POOLINGS:
        raise ConfigError(f"pooling={cfg.pooling.name!r} is unknown; valid poolings: {', '.join(POOLINGS)}")
    if src.image_size < spec.min_input:
        raise ConfigError(
            f"source.image_size={src.image_size} is too small for arch={spec.family} depth={spec.depth}; "
            f"it needs at least {spec.min_input}"
        )

    if spec.pretrained:
        snapshot = 0  # the pretrained weights themselves
    else:
        snapshot = src.epochs if src.snapshot is None else src.snapshot
        _positive_int("source.snapshot", snapshot)
        if snapshot > src.epochs:
            raise ConfigError(f"source.snapshot={snapshot} is past source.epochs={src.epochs}; valid: 1..{src.epochs}")

    n_train = _check_target(cfg)
    _check_finetune(cfg)
    feature_dim = spec.tap_dim(tap, cfg.pooling.name)
    if cfg.dimred.name == "pca":
        n = cfg.dimred.n_components
        _positive_int("dimred.n_components", n)
        limit = min(feature_dim, n_train or feature_dim)
        if n > limit:
            why = f"feature dim {feature_dim}" + (f", {n_train} target training images" if n_train else "")
            raise ConfigError(
                f"dimred.n_components={n} exceeds what layer {cfg.layer.name} allows here: valid 1..{limit} ({why})"
            )
    grid = cfg.classifier.C_grid
    if not grid or any(not (isinstance(c, (int, float)) and c > 0) for c in grid):
        raise ConfigError(f"classifier.C_grid={list(grid) if grid else grid} must be a non-empty list of positive numbers")
    return Plan(spec=spec, tap=tap, snapshot=int(snapshot), feature_dim=feature_dim)
