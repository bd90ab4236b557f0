"""Shared fixtures and functions: tiny configs composed with hydra.compose, a private artifact cache per test (holding a
copy of one tiny source net trained once per session), the CLI in a subprocess, result readers, a fake sweep."""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import src
from src import compose_once, config_copy
from tests.cli_server import Client

# Configs are composed and copied as `python -m src.main` does: it installs these two guarded patches of Hydra's and
# OmegaConf's internals first (parsed config files kept, configs copied without OmegaConf's node constructors). The
# tests of the patches themselves switch them off and on (tests/test_compose_once.py, tests/test_config_copy.py).
compose_once.install()
config_copy.install()

REPO = src.REPO_ROOT
# No test reaches a model hub: a library asked for weights it does not have must fail, not download.
os.environ["HF_HUB_OFFLINE"] = "1"
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
# A sweep's report (report/: imports, analysis, a dozen rendered plots) takes seconds at the end of every sweep;
# the cases about something else leave it out. summary.csv is still written.
NO_REPORT = "hydra.callbacks.summary.report=false"


def pytest_collection_modifyitems(config, items):
    """The longest tests first (the cases that start a session service, then the other `slow` ones), so that the
    two xdist workers do not end the session with one of them alone on a long case while the other is idle. A case
    marked `overlapped` mostly waits on work that its process's first service case started in the background: it
    comes after the slow ones, by when that work is done. Order within each tier is kept."""
    def tier(item) -> int:
        if item.get_closest_marker("overlapped"):
            return 2
        if item.get_closest_marker("service"):
            return 0
        return 1 if item.get_closest_marker("slow") else 3

    items.sort(key=tier)


def compose_tiny(*overrides: str, tiny: bool | str = True):
    """conf/config.yaml composed with the tiny sizes (tiny=True: source and target; "source": the source only;
    False: the real defaults) and `overrides`."""
    base = {True: TINY, "source": TINY_SOURCE, False: []}[tiny]
    if GlobalHydra.instance().is_initialized():  # inside a module's own initialize_config_dir(conf/)
        return compose("config", overrides=base + list(overrides))
    with initialize_config_dir(str(REPO / "conf")):
        return compose("config", overrides=base + list(overrides))


def session_dir(tmp_path_factory) -> Path:
    """A directory every process of this test session shares: under pytest-xdist the workers' common parent of
    their base temp dirs (pytest-xdist's documented pattern for session-wide data), else the base temp dir."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """The cache entry (`source/<key>/`) of the TINY source net, trained once per test session: under pytest-xdist
    by whichever worker asks first, while the other waits on the lock and then reuses it. Trained with one torch
    thread, as every TINY run is (trainer.num_threads=1), so it is the net any TINY job would train itself."""
    import torch

    from src.cache import Store
    from src.check import validate
    from src.experiment import source_stage

    root = session_dir(tmp_path_factory) / "tiny-source-cache"
    cfg = compose_tiny(f"paths.cache_dir={root}")
    threads = torch.get_num_threads()
    with FileLock(str(root) + ".lock"):
        torch.set_num_threads(1)
        try:
            stage = source_stage(cfg, validate(cfg), Store(root))
        finally:
            torch.set_num_threads(threads)
    return stage.entry


@pytest.fixture
def cache_dir(tmp_path, monkeypatch, request) -> Path:
    """This test's private cache (TRANSFER_CACHE_DIR, so subprocesses use it too), holding a copy of the session's
    TINY source net: a TINY job finds its source trained (`source_hit` True). A copy, not a link, so a test that
    damages entries damages only its own. Tests marked `empty_cache` start from an empty (absent) cache: those
    that must train the net themselves, and those that check nothing was written."""
    d = tmp_path / "cache"
    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(d))
    if request.node.get_closest_marker("empty_cache") is None:
        entry = request.getfixturevalue("tiny_source")
        shutil.copytree(entry, d / "source" / entry.name)
    return d


@pytest.fixture
def make_cfg(cache_dir):
    """compose(overrides) -> DictConfig of conf/config.yaml with the tiny sizes and a private cache.

    tiny=True: tiny source and target sizes; "source": tiny source only; False: the real defaults.
    """

    def _compose(*overrides: str, tiny: bool | str = True):
        return compose_tiny(*overrides, tiny=tiny)

    return _compose


_CLI_ROOT: list[str] = []


def _cli_root() -> str:
    """One temp dir per test process for run_cli's default output dirs, removed at exit."""
    if not _CLI_ROOT:
        _CLI_ROOT.append(tempfile.mkdtemp(prefix="transferfactors-cli-"))
        atexit.register(shutil.rmtree, _CLI_ROOT[0], True)
    return _CLI_ROOT[0]


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m src.main ARGS` in its own process (the way users run it). Without an explicit hydra.run.dir /
    hydra.sweep.dir the output goes to a private temp dir, not outputs/<time>: the suite runs in parallel workers
    (`make test`: pytest -n 2), and two runs started in the same second would share Hydra's default dir.

    The process is forked from this test process's CLI server (tests/cli_server.py), which has already imported
    torch, Lightning, scikit-learn and Hydra: the imports are most of a tiny run's CPU time. It runs a fresh
    interpreter instead when the run's environment sets what a library reads at import differently from the
    server's, or when TRANSFER_TEST_FORK=0. Either way: the same CompletedProcess, TimeoutExpired on a timeout."""
    own = tempfile.mkdtemp(prefix="cli-", dir=_cli_root())
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        if not any(a.startswith(f"{key}=") for a in args):
            args = (*args, f"{key}={own}/{key.split('.')[1]}")
    cmd = [sys.executable, "-m", "src.main", *args]
    full_env = {**os.environ, **(env or {})}
    server = _server_for(full_env)
    if server is None:
        return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    out, err = Path(own) / "stdout", Path(own) / "stderr"
    reply = server.request(op="run", module="src.main", args=list(args), cwd=str(cwd), env=full_env, stdout=str(out),
                           stderr=str(err), timeout=timeout)
    stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    if reply["timed_out"]:
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(cmd, reply["returncode"], stdout, stderr)


class ForkedProcess:
    """What `spawn_cli` returns for a run the CLI server forked: the part of subprocess.Popen the tests use."""

    def __init__(self, server: Client, cmd: list[str], pid: int, stdout: Path, stderr: Path | None) -> None:
        self.server, self.args, self.pid, self.stdout_path, self.stderr_path = server, cmd, pid, stdout, stderr
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            reply = self.server.request(op="wait", pid=self.pid, timeout=timeout)
            if reply["returncode"] is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = reply["returncode"]
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never a signal to a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return (self.stdout_path.read_text(errors="replace"),
                self.stderr_path.read_text(errors="replace") if self.stderr_path else "")


def spawn_cli(*args: str, module: str = "src.main", cwd: Path = REPO, env: dict | None = None,
              stdout: Path | None = None, stderr: Path | str | None = None):
    """`python -m MODULE ARGS` started in the background (forked by the CLI server as `run_cli` is, or a
    subprocess.Popen where it runs a fresh interpreter): stdout to the file `stdout` (None: discarded), stderr to
    the file `stderr`, "stdout" (the same file) or None (discarded). Its process group is its own (`os.killpg`)."""
    cmd = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, **(env or {})}
    out_path = Path(stdout or os.devnull)
    err_path = out_path if stderr == "stdout" else Path(stderr or os.devnull)
    server = _server_for(full_env)
    if server is None:
        with open(out_path, "w") as out, open(err_path, "a") as err:  # the child keeps its own copies
            return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, start_new_session=True,
                                    stderr=subprocess.STDOUT if stderr == "stdout" else err)
    reply = server.request(op="spawn", module=module, args=list(args), cwd=str(cwd), env=full_env,
                           stdout=str(out_path), stderr="stdout" if stderr == "stdout" else str(err_path), timeout=None)
    return ForkedProcess(server, cmd, reply["pid"], out_path, err_path if stderr else None)


_START_ENV = dict(os.environ)  # before any test's monkeypatch: the server's environment
_SERVER: list[Client] = []


def _server_for(env: dict) -> Client | None:
    """This test process's CLI server (started on first use) when a run with `env` may be forked from it: not when
    TRANSFER_TEST_FORK=0, nor when `env` sets what a library reads at import differently (then: a fresh interpreter)."""
    if os.environ.get("TRANSFER_TEST_FORK", "1") == "0":
        return None
    if not _SERVER:
        _SERVER.append(Client(dict(_START_ENV), REPO))
        atexit.register(_SERVER[0].close)
    return _SERVER[0] if _SERVER[0].forks(env) else None


def children_cpu() -> float:
    """CPU seconds of this process's finished children (a CLI run's own work, whatever the machine's load), the
    runs forked by the CLI server included (theirs without the imports the server did once). Time limits in tests
    are on this, not on wall time: on a shared machine neighbours stretch wall time several-fold without any change
    in the work a case does."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + (_SERVER[0].cpu if _SERVER else 0.0)


def results(root: Path, pattern: str = "*/result.json") -> dict[str, dict]:
    """Every result.json under a sweep dir (`pattern`: one level of job dirs; "**/result.json": any depth), keyed
    by its job dir relative to `root`."""
    return {p.parent.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.glob(pattern))}


# --- A finished sweep written by hand: 4 targets x 4 layers and one failed job (for the report's tests) ---------

FAKE_LAYERS = ["conv3", "conv5", "fc6", "fc7"]
# target -> (group, distance_rank, score per layer); the optimal layer moves to the input side with distance.
FAKE_TASKS = {
    "near": ("object", 1, [0.50, 0.70, 0.80, 0.90]),
    "mid": ("finegrained", 2, [0.55, 0.70, 0.75, 0.60]),
    "far": ("attribute", 3, [0.60, 0.65, 0.50, 0.40]),
    "farthest": ("structured", 4, [0.70, 0.60, 0.50, 0.45]),
}


def _write_result(path: Path, result: dict) -> None:
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps(result))


@pytest.fixture
def fake_sweep(tmp_path) -> Path:
    job = 0
    for target, (group, rank, scores) in FAKE_TASKS.items():
        for layer, score in zip(FAKE_LAYERS, scores):
            _write_result(tmp_path / str(job), {
                "status": "ok",
                "factors": {"arch": "alexnet", "layer": layer, "target": target, "group": group, "distance_rank": rank},
                "metrics": {"target_score": score, "target_metric": "accuracy",
                            "transferability": {"logme": score * 2 - 1, "nce": -score}},
                "timings_s": {"total": 1.0}, "cache": {"source_hit": True, "features_hit": True},
                "keys": {"source": "s", "features": f"f-{target}"},
            })
            job += 1
    _write_result(tmp_path / str(job), {"status": "failed", "factors": {"layer": "conv9", "target": "near"},
                                        "error": {"type": "ConfigError", "message": "layer='conv9' does not exist"}})
    return tmp_path


# --- The shared CIFAR-10 JPEGs (../shared/data), extracted once per session ------------------------------------

CIFAR_PER_CLASS = 100  # images per class and split taken from the archive: more than any test here reads


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """The shared CIFAR-10 JPEGs (ImageFolder layout), the first CIFAR_PER_CLASS images of every class and split:
    extracted once per session (under pytest-xdist by the first worker; the other waits on the lock)."""
    archive = SHARED_DATA / "cifar10-jpg.tar.gz"
    if not archive.exists():
        pytest.skip(f"{archive} is absent (the shared CIFAR-10 JPEGs only exist on the project's machines)")
    out = session_dir(tmp_path_factory) / "cifar10-jpg"
    with FileLock(str(out) + ".lock"):
        if not (out / "done").exists():
            taken: Counter = Counter()

            def wanted(member, path):  # a tarfile extraction filter: the data filter, on the files we keep
                folder = str(Path(member.name).parent)
                if member.isfile():
                    taken[folder] += 1
                    if taken[folder] > CIFAR_PER_CLASS:
                        return None
                return tarfile.data_filter(member, path)

            with tarfile.open(archive) as tar:
                tar.extractall(out, filter=wanted)
            (out / "done").touch()
    return next(p.parent for p in out.rglob("train") if (p.parent / "test").is_dir())
