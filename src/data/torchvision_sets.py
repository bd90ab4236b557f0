"""torchvision's datasets as targets (`target=cifar10`, ...) and sources (`source=torchvision_dataset`).

Data are read from `paths.data_dir` in torchvision's own on-disk layouts and never downloaded unless
`download: true`; a missing dataset fails fast with one line saying where it looked and how to fetch it.
Images come out as uint8 (N, 3, S, S) at the experiment's image size; `max_per_class` caps each class (seeded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from src.errors import ConfigError

# name -> (torchvision class, {our split: constructor kwargs}); datasets without an official split list "all".
DATASETS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "cifar10": ("CIFAR10", {"train": {"train": True}, "test": {"train": False}}),
    "cifar100": ("CIFAR100", {"train": {"train": True}, "test": {"train": False}}),
    "mnist": ("MNIST", {"train": {"train": True}, "test": {"train": False}}),
    "fashion_mnist": ("FashionMNIST", {"train": {"train": True}, "test": {"train": False}}),
    "svhn": ("SVHN", {"train": {"split": "train"}, "test": {"split": "test"}}),
    "stl10": ("STL10", {"train": {"split": "train"}, "test": {"split": "test"}}),
    "flowers102": ("Flowers102", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}}),
    "dtd": ("DTD", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}}),
    "oxford_pets": ("OxfordIIITPet", {"train": {"split": "trainval"}, "test": {"split": "test"}}),
    "food101": ("Food101", {"train": {"split": "train"}, "test": {"split": "test"}}),
    "caltech101": ("Caltech101", {"all": {}}),
    "sun397": ("SUN397", {"all": {}}),
    "eurosat": ("EuroSAT", {"all": {}}),
    "fgvc_aircraft": ("FGVCAircraft", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}}),
}
LABEL_ATTRS = ("targets", "labels", "_labels", "y")


class MissingDatasetError(ConfigError, FileNotFoundError):
    """A dataset is not on disk and downloading was not allowed (a one-line user error)."""


def open_split(name: str, root: str | Path, split: str, download: bool = False):
    import torchvision

    cls_name, splits = DATASETS[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root=str(root), download=download, **splits[split])
    except (RuntimeError, FileNotFoundError) as e:
        raise MissingDatasetError(
            f"dataset {name} not found under {root} (torchvision.datasets.{cls_name} says: {e}); fetch it once "
            f"with target.data.download=true (or source.download=true) where there is internet, or copy it there"
        ) from None


def _labels(ds) -> np.ndarray:
    for attr in LABEL_ATTRS:
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64).reshape(-1)
    return np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, 3, size, size) uint8 (bilinear; grey replicated to RGB)."""
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    if images.shape[2:] == (size, size):
        return np.ascontiguousarray(images)
    import torch
    import torch.nn.functional as F

    out = F.interpolate(torch.from_numpy(images).float(), size=(size, size), mode="bilinear", antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def _arrays(ds) -> np.ndarray | None:
    """The whole split as uint8 (N, C, H, W) when torchvision keeps it in memory (CIFAR, MNIST, SVHN, STL10)."""
    data = getattr(ds, "data", None)
    if data is None or isinstance(data, list):
        return None
    data = np.asarray(data)
    if data.ndim == 3:  # MNIST-style (N, H, W)
        return data[:, None]
    return data.transpose(0, 3, 1, 2) if data.shape[-1] == 3 else data  # CIFAR is NHWC, SVHN/STL10 NCHW


def load_split(name: str, root: str | Path, split: str, image_size: int, max_per_class: int | None, seed: int,
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    ds = open_split(name, root, split, download)
    labels = _labels(ds)
    idx = np.arange(len(labels))
    if max_per_class is not None:
        rng = np.random.default_rng([seed, 29])
        idx = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in np.unique(labels)
        ]))
    arrays = _arrays(ds)
    if arrays is not None:
        images = arrays[idx]
    else:  # file-backed datasets: decode only the chosen images, each resized on its own
        from PIL import Image

        images = np.stack([
            np.asarray(ds[i][0].convert("RGB").resize((image_size, image_size), Image.BILINEAR)).transpose(2, 0, 1)
            for i in idx
        ])
    return _resize_uint8(images, image_size), labels[idx]


def load_dataset_target(d: Mapping[str, Any], image_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/val/test of a torchvision dataset: its own val split if it has one, else a seeded hold-out of train
    (`val_fraction`); datasets without official splits also hold out a seeded test split (`test_fraction`)."""
    from src.data.splits import hold_out as _hold_out

    name, root, seed = d["dataset"], d["root"], d["seed"]
    splits = DATASETS[name][1]
    load = lambda split, cap: load_split(name, root, split, image_size, cap, seed, d.get("download", False))  # noqa: E731
    if "all" in splits:
        x, y = load("all", d.get("max_per_class"))
        idx = _hold_out(y, d.get("test_fraction") or 0.2, seed + 1)
        test, x, y = (x[idx["held"]], y[idx["held"]]), x[idx["rest"]], y[idx["rest"]]
    else:
        x, y = load("train", d.get("max_per_class"))
        test = load("test", d.get("max_test_per_class"))
    if "val" in splits:
        return {"train": (x, y), "val": load("val", d.get("max_per_class")), "test": test}
    idx = _hold_out(y, d.get("val_fraction") or 0.2, seed)
    return {"train": (x[idx["rest"]], y[idx["rest"]]), "val": (x[idx["held"]], y[idx["held"]]), "test": test}
