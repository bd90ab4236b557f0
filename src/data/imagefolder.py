"""ImageFolder trees (`root/<class>/<image>`) as uint8 arrays, resized to the experiment's image size.

Used by `source=imagefolder` and `target=imagefolder`. Class order is sorted by name (torchvision's
ImageFolder convention); `classes` picks a subset, `max_per_class` takes a seeded random subset of each class.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImageError(ValueError):
    """An image file PIL cannot decode (truncated, corrupt); the message names the file."""


def list_classes(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageFolder root {root} does not exist (expected one sub-directory per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))  # (.ipynb_checkpoints)
    if not classes:
        raise FileNotFoundError(f"ImageFolder root {root} has no class sub-directories")
    return classes


def image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def check_classes(root: str | Path, wanted: Sequence[str] | None) -> list[str]:
    """The classes to use (at least 2, each with an image); ValueError naming what is wrong and the choices.

    Lists directories only (no image is decoded), so it is cheap enough for the config check.
    """
    available = list_classes(root)
    chosen = list(wanted) if wanted else available
    twice = sorted({c for c in chosen if chosen.count(c) > 1})
    if twice:  # one folder as two labels: its images would be one class under two names
        raise ValueError(f"classes {chosen} name {', '.join(twice)} more than once; list each class once")
    missing = [c for c in chosen if c not in available]
    if missing:
        raise ValueError(f"classes {missing} are not in {root}; valid classes: {', '.join(available)}")
    if len(chosen) < 2:
        raise ValueError(f"{root} has {len(chosen)} class ({', '.join(chosen)}); a classification task needs 2 or more")
    for name in chosen:
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in (Path(root) / name).iterdir()):
            split = {"train", "test"} <= set(available)  # a target's train/test tree given where one tree is read
            hint = f"; {root} holds train/ and test/: give {Path(root) / 'train'} (one tree, <class>/<image>)" \
                if split else ""
            raise ValueError(f"class folder {Path(root) / name} has no images ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    return chosen


# Read once per process: (resolved root, classes, splits) -> the tree's digest; ("count", resolved class folder) ->
# its number of images (listed with the digest: the config check of every job of a sweep asks for both).
_TREES: dict[tuple, str | int] = {}


def image_count(class_dir: str | Path) -> int:
    """The image files of a class folder, as `image_files` lists them, counted once per process."""
    memo = ("count", os.path.realpath(class_dir))
    if memo not in _TREES:
        _TREES[memo] = len(image_files(Path(class_dir)))
    return int(_TREES[memo])


def tree_digest(root: str | Path, classes: Sequence[str] | None = None, splits: bool = True) -> str:
    """sha256 of the listing of the image files the loader can read under `root` (`root/train` and `root/test` when
    both exist and `splits`, else `root` itself; the chosen classes, or all): path, size and modification time.

    With the tree's resolved path, what a cache key hashes for a folder of images: replacing, adding, removing or
    renaming an image gives the stages that read it new keys. An image rewritten with its size and modification
    time kept is not seen (as by make or rsync). A tree is listed once per process: one changed during a sweep is
    seen by the next one. A broken link is a ValueError naming it.
    """
    where = Path(os.path.realpath(root))
    memo = (str(where), tuple(classes or ()), splits)
    if memo not in _TREES:
        h = hashlib.sha256()
        both = splits and (where / "train").is_dir() and (where / "test").is_dir()
        for base in (where / "train", where / "test") if both else (where,):
            for name in (classes or (list_classes(base) if base.is_dir() else [])):
                folder = base / name
                files = image_files(folder) if folder.is_dir() else []
                if folder.is_dir():
                    _TREES["count", os.path.realpath(folder)] = len(files)
                for path in files:
                    try:
                        st = path.stat()
                    except OSError as e:  # a broken link: said by the config check, before anything is built
                        raise ValueError(f"cannot read image {path} ({e.strerror}); remove or replace the "
                                         f"file") from None
                    h.update(f"{path.relative_to(where)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        _TREES[memo] = h.hexdigest()
    return str(_TREES[memo])


def _load(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im).transpose(2, 0, 1)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's truncated/corrupt-file errors name no file
        raise UnreadableImageError(f"cannot read image {path} ({e}); remove or replace the file") from None


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
        files = image_files(root / name)
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in np.sort(rng.choice(len(files), max_per_class, replace=False))]
        paths += files
        labels += [label] * len(files)
    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes release the GIL
        images = list(pool.map(lambda p: _load(p, image_size), paths))
    return np.stack(images), np.asarray(labels, dtype=np.int64), names
