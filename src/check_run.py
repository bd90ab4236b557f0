"""Range checks for the run-wide settings and every numeric field (no torch: part of the config check).

Each check raises `ConfigError` with one line naming the key, the bad value and the valid range, before any data
is rendered or any net built. Upper bounds are sanity limits (far beyond anything a CPU-scale sweep uses) that
catch typos such as `lr=1e9` or `epochs=10000` before they turn into a divergent run or hours of work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy and torch accept seeds in 0..2**32-1
OPTIMIZERS = ("sgd", "adamw")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")

# key -> (low, high, integer, low_inclusive): valid values are low..high (low excluded if not low_inclusive).
BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "width.multiplier": (0, 4, False, False),
    "source.num_classes": (2, 1000, True, True),  # one class: nothing to learn, and val acc is trivially 1.0
    "source.images_per_class": (1, 100_000, True, True),
    "source.val_per_class": (1, 100_000, True, True),
    "source.max_per_class": (1, 10**7, True, True),
    "source.image_size": (8, 1024, True, True),
    "source.epochs": (1, 1000, True, True),
    "trainer.optim.lr": (0, 10, False, False),
    "trainer.optim.momentum": (0, 0.999, False, True),
    "trainer.optim.weight_decay": (0, 1, False, True),
    "trainer.optim.batch_size": (1, 65536, True, True),
    "trainer.optim.label_smoothing": (0, 0.99, False, True),
    "trainer.num_threads": (1, 1024, True, True),
    "trainer.extract_batch_size": (1, 65536, True, True),
    "finetune.lr": (0, 10, False, False),
    "finetune.momentum": (0, 0.999, False, True),
    "finetune.weight_decay": (0, 1, False, True),
    "finetune.epochs": (1, 1000, True, True),
    "finetune.batch_size": (1, 65536, True, True),
    "target.data.num_classes": (2, 1000, True, True),  # one class: the probe has nothing to separate
    "target.data.train_per_class": (1, 100_000, True, True),
    "target.data.val_per_class": (1, 100_000, True, True),
    "target.data.test_per_class": (1, 100_000, True, True),
    "target.data.train_images": (1, 10**6, True, True),
    "target.data.val_images": (1, 10**6, True, True),
    "target.data.test_images": (1, 10**6, True, True),
    "target.data.num_instances": (2, 100_000, True, True),
    "target.data.database_per_instance": (1, 10_000, True, True),
    "target.data.queries_per_instance": (1, 10_000, True, True),
    "target.data.max_per_class": (1, 10**7, True, True),
    "target.data.seed": (0, SEED_MAX, True, True),
    "target.data.family_seed": (0, SEED_MAX, True, True),
    "target.data.val_fraction": (0, 0.9, False, False),
    "target.data.test_fraction": (0, 0.9, False, False),
    "target.data.max_test_per_class": (1, 10**7, True, True),
    "dimred.n_components": (1, 100_000, True, True),
}


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_value(key: str, value: Any, low: float, high: float, integer: bool, low_inclusive: bool) -> None:
    kind = "an integer" if integer else "a number"
    valid = f"{low}..{high}" if low_inclusive else f"> {low} and <= {high}"
    ok_type = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok_type or (not integer and not math.isfinite(value)):
        raise ConfigError(f"{key}={value!r} must be {kind}; valid: {valid}")
    if value < low or (value == low and not low_inclusive) or value > high:
        raise ConfigError(f"{key}={value!r} is out of range; valid: {valid}")


def check_bounds(cfg: DictConfig) -> None:
    """Every numeric field present in this config (null means 'default' where a field allows it)."""
    for key, bounds in BOUNDS.items():
        present, value = _select(cfg, key)
        if present and value is not None:
            check_value(key, value, *bounds)


def check_seed(cfg: DictConfig) -> None:
    check_value("seed", cfg.seed, 0, SEED_MAX, True, True)


def check_trainer(cfg: DictConfig) -> None:
    t = cfg.trainer
    if t.optim.name not in OPTIMIZERS:
        raise ConfigError(f"trainer.optim.name={t.optim.name!r} is unknown; valid: {', '.join(OPTIMIZERS)}")
    if str(t.accelerator) not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={t.accelerator!r} is unknown; valid: {', '.join(ACCELERATORS)}")
    if str(t.precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={t.precision!r} is unknown; valid: {', '.join(PRECISIONS)}")
    if t.progress_bar is not None and not isinstance(t.progress_bar, bool):
        raise ConfigError(f"trainer.progress_bar={t.progress_bar!r}; valid: true, false, null (only on a terminal)")


def check_writable_dir(key: str, value: Any) -> None:
    """A directory we will write into: non-empty, not a file, creatable and writable. Creates nothing."""
    if value is None or not str(value).strip():
        raise ConfigError(f"{key}={value!r} is empty; set a directory (e.g. TRANSFER_CACHE_DIR=/path/to/cache)")
    path = Path(os.path.expanduser(str(value)))
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        raise ConfigError(f"{key}={path}: none of its parents exists")
    if not existing.is_dir():
        what = "is a file" if existing == path else f"has a file in its path ({existing})"
        raise ConfigError(f"{key}={path} {what}; point it at a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} is not writable ({existing} is read-only for this user)")


def check_paths(cfg: DictConfig) -> None:
    check_writable_dir("paths.cache_dir", cfg.paths.cache_dir)


def check_run(cfg: DictConfig) -> None:
    """Seed, paths, trainer and every numeric bound; raises ConfigError with one line."""
    check_seed(cfg)
    check_paths(cfg)
    check_trainer(cfg)
    check_bounds(cfg)


# --- Sweeper settings given on the command line (Hydra builds the sweeper before any job runs) ----------
def check_sweeper_overrides(argv: list[str]) -> None:
    """`hydra.sweeper.n_trials` from the command line, before Hydra starts a study (a storage URL's driver is checked
    by `src.search.cli.prepare_storage_args`, which also takes any password out of the URL)."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra.sweeper.n_trials":
            try:
                n = int(value)
            except ValueError:
                raise ConfigError(f"hydra.sweeper.n_trials={value!r} must be an integer; valid: 1..100000") from None
            check_value("hydra.sweeper.n_trials", n, 1, 100_000, True, True)
