"""Shared fixtures: a private artifact cache per test session and tiny configs composed with hydra.compose."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import src

REPO = src.REPO_ROOT
SHARED_DATA = REPO.parent / "shared" / "data"

# A source and target small enough that a full experiment takes seconds on 2 CPU cores.
TINY_SOURCE = [
    "width=tiny",
    "source.num_classes=4",
    "source.images_per_class=40",
    "source.val_per_class=10",
    "source.epochs=2",
    "trainer.optim.batch_size=32",
    "trainer.num_threads=1",
]
TINY_TARGET = [
    "target.data.num_classes=4",
    "target.data.train_per_class=12",
    "target.data.val_per_class=6",
    "target.data.test_per_class=12",
]
TINY = TINY_SOURCE + TINY_TARGET


_CLI_ROOT: list[str] = []


def _cli_root() -> str:
    """One temp dir per test process for run_cli's default output dirs, removed at exit."""
    if not _CLI_ROOT:
        _CLI_ROOT.append(tempfile.mkdtemp(prefix="transferfactors-cli-"))
        atexit.register(shutil.rmtree, _CLI_ROOT[0], True)
    return _CLI_ROOT[0]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(d))
    return d


@pytest.fixture
def make_cfg(cache_dir):
    """compose(overrides) -> DictConfig of conf/config.yaml with the tiny sizes and a private cache.

    tiny=True: tiny source and target sizes; "source": tiny source only; False: the real defaults.
    """

    def _compose(*overrides: str, tiny: bool | str = True):
        base = {True: TINY, "source": TINY_SOURCE, False: []}[tiny]
        with initialize_config_dir(str(REPO / "conf")):
            return compose("config", overrides=base + list(overrides))

    return _compose


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m src.main ARGS` in a subprocess (the way users run it). Without an explicit hydra.run.dir /
    hydra.sweep.dir the output goes to a private temp dir, not outputs/<time>: the suite runs in parallel workers
    (`make test`: pytest -n 2), and two runs started in the same second would share Hydra's default dir."""
    own = tempfile.mkdtemp(prefix="cli-", dir=_cli_root())
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        if not any(a.startswith(f"{key}=") for a in args):
            args = (*args, f"{key}={own}/{key.split('.')[1]}")
    return subprocess.run(
        [sys.executable, "-m", "src.main", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
