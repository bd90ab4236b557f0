"""Seeded per-class splits of a labelled set (a leaf of src.data: the task builders and loaders share it)."""

from __future__ import annotations

from typing import Mapping

import numpy as np


def stratified_split(labels: np.ndarray, sizes: Mapping[str, int | None], seed: int) -> dict[str, np.ndarray]:
    """Indices per split with `sizes[split]` examples of every class; a size of None takes all that is left."""
    rng = np.random.default_rng([seed, 17])
    out: dict[str, list[np.ndarray]] = {name: [] for name in sizes}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, n in sizes.items():
            stop = len(idx) if n is None else start + int(n)
            if stop > len(idx):
                raise ValueError(
                    f"class {c} has {len(idx)} examples, fewer than the {sum(v or 0 for v in sizes.values())} "
                    f"the splits ask for ({dict(sizes)})"
                )
            out[name].append(idx[start:stop])
            start = stop
    return {name: np.sort(np.concatenate(parts)) for name, parts in out.items()}


def hold_out(y: np.ndarray, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded per-class hold-out of `fraction` of the smallest class (at least one image per class)."""
    per_class = max(1, int(np.bincount(y).min() * fraction))
    return stratified_split(y, {"held": per_class, "rest": None}, seed)
