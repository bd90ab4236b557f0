"""Same config and seed -> identical metrics and bitwise-identical cached snapshots and features (CPU)."""

import hashlib
from pathlib import Path

import pytest

from src.main import execute


def digests(entry_root: Path) -> dict[str, str]:
    """sha256 of every snapshot and feature file in a cache (logs and timings differ run to run by design)."""
    out = {}
    for p in sorted(entry_root.rglob("*")):
        if p.is_file() and (p.suffix == ".npy" or p.name.startswith("snapshot_")):
            out[str(p.relative_to(entry_root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def comparable(result: dict) -> dict:
    m = result["metrics"]
    return {k: m[k] for k in ("target_score", "source_val_acc", "best_C", "val_scores", "transferability")}


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_gives_bitwise_identical_artifacts(make_cfg, tmp_path, monkeypatch, threads):
    runs = []
    for i in range(2):
        cache = tmp_path / f"cache{i}"  # separate caches: both runs really train and extract
        monkeypatch.setenv("TRANSFER_CACHE_DIR", str(cache))
        r = execute(make_cfg(f"trainer.num_threads={threads}", "layer=conv_last", "pooling=spp"), tmp_path / f"r{i}")
        assert r["cache"]["source_hit"] is False and r["cache"]["features_hit"] is False
        runs.append((comparable(r), digests(cache), r["keys"]))
    (m0, d0, k0), (m1, d1, k1) = runs
    assert k0 == k1 and m0 == m1
    assert any(n.endswith(".npy") for n in d0) and any("snapshot_" in n for n in d0)
    assert d0 == d1
