"""torchvision dataset loaders on fixtures fabricated in torchvision's on-disk formats (no network)."""

import pickle
import struct

import numpy as np
import pytest

from src.data import torchvision_sets as T
from src.main import execute
from tests.conftest import children_cpu, run_cli

rng = np.random.default_rng(0)


def _cifar_images(labels, learnable: bool) -> np.ndarray:
    """(N, 3072) uint8 rows in CIFAR's channel-planar layout: noise, or (learnable) each class's own colour under
    noise, so that a probe can tell the classes apart."""
    noise = rng.integers(0, 255, (len(labels), 3, 1024))
    if not learnable:
        return noise.reshape(len(labels), 3072).astype(np.uint8)
    colours = np.random.default_rng(10).integers(0, 255, (10, 3, 1))
    return (0.7 * colours[np.asarray(labels)] + 0.3 * noise).astype(np.uint8).reshape(len(labels), 3072)


def _cifar10(root, n_train=60, n_test=30, learnable=False):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        y = rng.integers(0, 10, n_train // 5)
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": _cifar_images(y, learnable), "labels": list(y)}, f)
    y = np.arange(n_test) % 10
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": _cifar_images(y, learnable), "labels": list(y)}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def _idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
    path.write_bytes(header + arr.tobytes())  # torchvision reads the extracted (un-gzipped) raw files


def _mnist(root, folder="MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 50), ("t10k", 20)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))


def _svhn(root):
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("test", 20)):
        savemat(root / f"{split}_32x32.mat", {"X": rng.integers(0, 255, (32, 32, 3, n), dtype=np.uint8),
                                              "y": (np.arange(n) % 10 + 1).reshape(-1, 1)})  # SVHN labels 1..10


@pytest.fixture
def no_md5(monkeypatch):
    """Fabricated files cannot match torchvision's md5 sums; everything else about the format is real."""
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *a, **k: True)


@pytest.mark.parametrize("name,make,n_train,n_test", [
    ("cifar10", _cifar10, 60, 30),
    ("mnist", _mnist, 50, 20),
    ("fashion_mnist", lambda r: _mnist(r, "FashionMNIST"), 50, 20),
    ("svhn", _svhn, 40, 20),
])
def test_loaders_read_torchvision_layouts(tmp_path, no_md5, name, make, n_train, n_test):
    make(tmp_path)
    x, y = T.load_split(name, tmp_path, "train", 32, None, seed=0)
    assert x.shape == (n_train, 3, 32, 32) and x.dtype == np.uint8 and len(y) == n_train
    assert y.min() >= 0 and y.max() <= 9
    xt, yt = T.load_split(name, tmp_path, "test", 16, 1, seed=0)  # resized, capped at 1 per class
    assert xt.shape[1:] == (3, 16, 16) and np.bincount(yt).max() == 1
    d = {"dataset": name, "root": str(tmp_path), "seed": 0, "val_fraction": 0.2, "max_per_class": None}
    splits = T.load_dataset_target(d, 32)
    assert sum(len(splits[s][1]) for s in ("train", "val")) == n_train and len(splits["test"][1]) == n_test


def test_every_dataset_missing_fails_with_a_fetch_hint(tmp_path):
    for name in T.DATASETS:
        split = next(iter(T.DATASETS[name][1]))
        with pytest.raises(T.MissingDatasetError, match=f"dataset {name} not found under .*download=true"):
            T.open_split(name, tmp_path / "empty", split)


def test_cifar10_target_end_to_end(tmp_path, no_md5, make_cfg):
    """The loader's images and labels reach the probe together: on classes that differ by colour (under noise),
    the tiny source's features score far above chance (0.1)."""
    _cifar10(tmp_path / "data", n_train=100, n_test=50, learnable=True)
    cfg = make_cfg("target=cifar10", f"paths.data_dir={tmp_path / 'data'}", "target.data.max_per_class=8",
                   "target.data.max_test_per_class=4", tiny="source")
    r = execute(cfg, tmp_path / "run")
    assert r["metrics"]["target_metric"] == "accuracy" and r["metrics"]["target_score"] >= 0.5


@pytest.mark.slow
def test_missing_dataset_cli_is_fast(tmp_path):
    """Found missing at the config check, before any net is built: a few CPU seconds, whatever the machine's load."""
    cpu0 = children_cpu()
    r = run_cli("target=cifar10", f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode != 0 and children_cpu() - cpu0 < 15
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: dataset cifar10 not found under {tmp_path}")


def _dtd(root, classes=("banded", "dotted", "striped"), per_split=(4, 2, 3)):
    """DTD's layout: dtd/dtd/images/<class>/<file>.jpg and dtd/dtd/labels/{train,val,test}1.txt."""
    from PIL import Image

    data = root / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True)
    for split, n in zip(("train", "val", "test"), per_split):
        lines = []
        for c in classes:
            (data / "images" / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                name = f"{c}_{split}_{i}.jpg"
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(data / "images" / c / name)
                lines.append(f"{c}/{name}")
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def test_file_backed_dataset_dtd(tmp_path):
    """A file-backed dataset (images decoded one by one with PIL, resized), with its own val split."""
    _dtd(tmp_path)
    d = {"dataset": "dtd", "root": str(tmp_path), "seed": 0, "max_per_class": 3, "max_test_per_class": None}
    splits = T.load_dataset_target(d, 32)
    assert splits["train"][0].shape == (9, 3, 32, 32) and splits["train"][0].dtype == np.uint8
    assert np.bincount(splits["train"][1]).tolist() == [3, 3, 3]  # capped per class
    assert len(splits["val"][1]) == 6 and len(splits["test"][1]) == 9
