"""An interrupted source training resumes from its last complete epoch and gives the uninterrupted net, bitwise."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, spawn_cli

EPOCHS = 4
ARGS = [o for o in TINY if not o.startswith("source.epochs")] + [f"source.epochs={EPOCHS}"]


def snapshots(entry: Path) -> dict[int, dict]:
    import torch

    return {int(p.stem.split("_")[1]): torch.load(p, weights_only=True) for p in sorted(entry.glob("snapshot_*.pt"))}


def source_entry(cache: Path) -> Path:
    (entry,) = [p.parent for p in (cache / "source").glob("*/manifest.json")]
    return entry


@pytest.mark.slow
@pytest.mark.empty_cache
def test_killed_training_resumes_bitwise(cache_dir, tmp_path, make_cfg, monkeypatch):
    """`kill -9` while the source net trains (after epoch 2 of 4 is snapshotted), then the same command again: the
    rerun resumes from the last checkpointed epoch instead of epoch 0, and every epoch's snapshot equals an
    uninterrupted training's (same config, one thread)."""
    import torch

    from src.main import execute

    run_dir = tmp_path / "run"
    proc = spawn_cli(*ARGS, f"hydra.run.dir={run_dir}")
    deadline = time.time() + 300
    while time.time() < deadline and not list((cache_dir / "source").glob(".*.resume/snapshot_2.pt")):
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (resume,) = (cache_dir / "source").glob(".*.resume")
    assert (resume / "last.ckpt").is_file() and not list((cache_dir / "source").glob("*/manifest.json"))

    resumed = execute(make_cfg(f"source.epochs={EPOCHS}"), tmp_path / "resumed")  # the same config
    assert resumed["status"] == "ok" and resumed["cache"]["source_hit"] is False
    entry = source_entry(cache_dir)
    metrics = json.loads((entry / "metrics.json").read_text())
    assert 1 <= metrics["resumed_from_epoch"] < EPOCHS  # from a checkpoint, not from epoch 0
    assert sorted(metrics["val_acc"]) == [str(e) for e in range(1, EPOCHS + 1)]
    assert not resume.exists() and not (entry / "last.ckpt").exists()  # the resume dir went into the entry

    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(tmp_path / "fresh"))
    straight = execute(make_cfg(f"source.epochs={EPOCHS}"), tmp_path / "straight")
    assert straight["cache"]["source_hit"] is False
    a, b = snapshots(entry), snapshots(source_entry(tmp_path / "fresh"))
    assert sorted(a) == sorted(b) == list(range(1, EPOCHS + 1))
    for epoch in a:
        assert a[epoch].keys() == b[epoch].keys()
        assert all(torch.equal(a[epoch][k], b[epoch][k]) for k in a[epoch]), f"epoch {epoch} differs"
    assert json.loads((source_entry(tmp_path / "fresh") / "metrics.json").read_text())["val_acc"] == metrics["val_acc"]
    assert resumed["metrics"]["target_score"] == straight["metrics"]["target_score"]
