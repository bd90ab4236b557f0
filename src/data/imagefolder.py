"""ImageFolder trees (`root/<class>/<image>`) as uint8 arrays, resized to the experiment's image size.

Used by `source=imagefolder` and `target=imagefolder`. Class order is sorted by name (torchvision's
ImageFolder convention); `classes` picks a subset, `max_per_class` takes a seeded random subset of each class.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def list_classes(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageFolder root {root} does not exist (expected one sub-directory per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"ImageFolder root {root} has no class sub-directories")
    return classes


def check_classes(root: str | Path, wanted: Sequence[str] | None) -> list[str]:
    """The classes to use; raises ValueError naming unknown ones and the valid choices."""
    available = list_classes(root)
    if not wanted:
        return available
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"classes {missing} are not in {root}; valid classes: {', '.join(available)}")
    return list(wanted)


def _load(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im).transpose(2, 0, 1)


def load_imagefolder(
    root: str | Path, classes: Sequence[str] | None, max_per_class: int | None, image_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, 3, S, S), labels, class names) for the chosen classes of an ImageFolder tree."""
    root = Path(root)
    names = check_classes(root, classes)
    rng = np.random.default_rng([seed, 23])
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in np.sort(rng.choice(len(files), max_per_class, replace=False))]
        paths += files
        labels += [label] * len(files)
    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
        images = list(pool.map(lambda p: _load(p, image_size), paths))
    return np.stack(images), np.asarray(labels, dtype=np.int64), names
