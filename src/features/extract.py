"""Feature extraction: every tap of a source net in one forward pass, conv taps pooled, written in chunks.

One extraction serves a whole layer x pooling x dimred x classifier sweep: a feature-store entry holds,
for each split of the target, every tap of the net, and for conv taps every spatial pooling
(`avg`, `max`, `spp` = max over a 1x1 + 2x2 pyramid; `max` is read from spp's first block). Arrays go straight from each batch into memory-mapped
`.npy` files, so the full feature matrix is never held twice in memory.

Layout of an entry: `<split>/labels.npy`, `<split>/<tap>.npy` (fc taps), `<split>/<tap>.{avg,spp}.npy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from src.models.spec import POOLINGS, ArchSpec
from src.models.nets import to_input


def pool_conv(fmap: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spatial poolings of a conv map (N, C, H, W): avg (N, C) and spp (N, 5C) = [1x1 max, 2x2 max].

    `max` pooling is spp's first C columns, so it is not stored twice (see `load_features`). The global max is
    taken over the 2x2 grid's cells rather than the whole map again: one pass over the map for both.
    """
    h, w = fmap.shape[2:]
    if h >= 2 and w >= 2:
        # A plain max pool with half-map kernels is the same 2x2 grid as the adaptive pool for even sizes, faster.
        grid = F.max_pool2d(fmap, (h // 2, w // 2)) if h % 2 == 0 and w % 2 == 0 else F.adaptive_max_pool2d(fmap, 2)
        g_max = grid.amax((2, 3))
        grid = grid.flatten(1)
    else:
        g_max = fmap.amax((2, 3))
        grid = g_max.repeat_interleave(4, dim=1)
    return {"avg": fmap.mean((2, 3)), "spp": torch.cat([g_max, grid], 1)}


def pool_tokens(seq: torch.Tensor, prefix: int) -> dict[str, torch.Tensor]:
    """Poolings of a token sequence (N, T, D): avg and max over the patch tokens (after the `prefix` class /
    register tokens), and cls = the first token when the model has one."""
    patches = seq[:, prefix:] if seq.shape[1] > prefix else seq
    out = {"avg": patches.mean(1), "max": patches.amax(1)}
    if prefix:
        out["cls"] = seq[:, 0]
    return out


def _file(split_dir: Path, tap: str, pooling: str | None) -> Path:
    return split_dir / (f"{tap}.{pooling}.npy" if pooling else f"{tap}.npy")


@torch.inference_mode()
def extract_splits(
    model: torch.nn.Module,
    tap_nodes: Mapping[str, str],
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_dir: Path,
    batch_size: int = 256,
    preprocess: Callable[[torch.Tensor], torch.Tensor] = to_input,
    device: str = "cpu",
    extractor: Callable | None = None,
    prefix_tokens: int = 0,
) -> None:
    """Write every tap's features for every split under `out_dir` (a cache staging dir).

    `tap_nodes` maps our tap names to the model's graph nodes; `preprocess` turns a uint8 batch into inputs;
    `extractor(model, return_nodes)` traces the model (torchvision's `create_feature_extractor` by default; a
    library may need its own); 3-d outputs are token sequences with `prefix_tokens` class / register tokens first.
    """
    if extractor is None:  # imported here, not at the top: torchvision's models take seconds to import, and a job
        # whose features are cached never traces a net
        from torchvision.models.feature_extraction import create_feature_extractor

        def extractor(m, nodes):
            return create_feature_extractor(m, return_nodes=nodes)

    traced = extractor(model, {n: t for t, n in tap_nodes.items()}).eval().to(device)
    for split, (images, labels) in splits.items():
        split_dir = out_dir / split
        split_dir.mkdir(parents=True)
        np.save(split_dir / "labels.npy", labels.astype(np.int64))
        files: dict[tuple[str, str | None], np.memmap] = {}
        n = len(images)
        for start in range(0, n, batch_size):
            x = preprocess(torch.from_numpy(images[start : start + batch_size]).to(device))
            outs = traced(x)
            for tap, value in outs.items():
                pooled = (pool_conv(value) if value.dim() == 4 else pool_tokens(value, prefix_tokens)
                          if value.dim() == 3 else {None: value})
                for pooling, arr in pooled.items():
                    if (tap, pooling) not in files:
                        files[tap, pooling] = np.lib.format.open_memmap(
                            _file(split_dir, tap, pooling), mode="w+", dtype=np.float32, shape=(n, arr.shape[1])
                        )
                    files[tap, pooling][start : start + len(arr)] = arr.float().cpu().numpy()
        # No msync here: the pages reach the disk in the background, and the cache's manifest (sizes and sha256,
        # computed right after) makes a reader rebuild an entry whose files did not all arrive.
        del files


def load_features(entry: Path, split: str, spec: ArchSpec, layer: str, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one split for a layer name (aliases allowed) and conv pooling."""
    tap = spec.resolve(layer)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}; valid: {', '.join(POOLINGS)}")
    split_dir = entry / split
    if tap in spec.tokens:
        x = np.load(_file(split_dir, tap, pooling), mmap_mode="r")
    elif not spec.is_conv(tap):
        x = np.load(_file(split_dir, tap, None), mmap_mode="r")
    elif pooling == "max":  # the first block of spp is the global max
        spp = np.load(_file(split_dir, tap, "spp"), mmap_mode="r")
        x = spp[:, : spp.shape[1] // 5]
    else:
        x = np.load(_file(split_dir, tap, pooling), mmap_mode="r")
    return np.array(x), np.load(split_dir / "labels.npy")
