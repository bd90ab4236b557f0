"""The guarded framework patches (src/patching.py): the Optuna heartbeat storage under warnings-as-errors and its
stock fallback; the Hydra/OmegaConf ones are compared with stock behaviour in test_compose_once/test_config_copy."""

from __future__ import annotations

import subprocess
import sys

from src import REPO_ROOT

ASK_TELL = """
import warnings, optuna
from src.search.storage import open_storage, HeartbeatStorage
storage = open_storage("sqlite:///{db}", heartbeat_interval=1, grace_period=2)
print(type(storage).__name__)
study = optuna.create_study(study_name="s", storage=storage)  # what Hydra's Optuna sweeper does: ask, tell
trial = study.ask()
study.tell(trial, 1.0)
print(len(study.trials), study.trials[0].state.name)
"""


def _run(db, env=None):
    import os

    return subprocess.run([sys.executable, "-W", "error", "-c", ASK_TELL.format(db=db)], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_heartbeat_storage_runs_under_warnings_as_errors(tmp_path):
    """Hydra's Optuna sweeper tests run with -Werror: the experimental heartbeat argument and the 'heartbeats are
    meant for Study.optimize' notice are filtered where they are emitted, nothing else is."""
    r = _run(tmp_path / "a.db")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["HeartbeatStorage", "1", "COMPLETE"]


def test_storage_patch_switched_off_falls_back_to_optunas_own_storage(tmp_path):
    r = _run(tmp_path / "b.db", {"TRANSFER_PATCH_OPTUNA_STORAGE": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["RDBStorage", "1", "COMPLETE"]


def test_internals_of_the_sweep_plan_and_local_launchers_are_guarded(monkeypatch):
    import pytest
    from omegaconf import OmegaConf

    """The progress line's job plan and the staged local launchers use Hydra internals only where their guards
    allow: switched off, the plan is None (no per-stage ETA) and a launcher takes its stock path."""
    from hydra_plugins.transferfactors_plugins.local_launchers import StagedBasicLauncher
    from hydra_plugins.transferfactors_plugins.local_launchers import GUARDS
    from src import job_plan

    assert job_plan.GUARD.allowed() and all(g.allowed() for g in GUARDS.values())
    monkeypatch.setenv("TRANSFER_PATCH_JOB_PLAN", "0")
    with pytest.raises(RuntimeError):
        job_plan.job_overrides([])
    monkeypatch.setenv("TRANSFER_PATCH_STAGED_CORE", "0")
    launcher = StagedBasicLauncher()
    launcher.config = OmegaConf.create({"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins."
                                                                          "basic_sweeper.BasicSweeper"}}})
    assert launcher.planned() is False and launcher.stage_scheduling is False


def test_torchvisions_import_without_the_compiler_is_guarded(monkeypatch):
    """src/lazy_dynamo.py (what it saves: tests/test_job_overhead.py): switched off, or in a process that has
    already imported torchvision, it puts nothing in the import system; the stand-in helper answers as torch's."""
    from torch._dynamo.utils import is_compile_supported

    from src import lazy_dynamo

    assert all(g.allowed() for g in lazy_dynamo.GUARDS)
    assert [lazy_dynamo.is_compile_supported(d) for d in ("cpu", "meta")] == [is_compile_supported(d)
                                                                             for d in ("cpu", "meta")]
    assert lazy_dynamo.install() is False and not lazy_dynamo.installed()  # torchvision is imported here
    monkeypatch.setenv("TRANSFER_PATCH_LAZY_DYNAMO", "0")
    assert {g.reason_off() for g in lazy_dynamo.GUARDS} == {"TRANSFER_PATCH_LAZY_DYNAMO=0"}


def test_the_command_lines_overrides_come_from_hydras_parser_where_its_guard_allows(monkeypatch):
    """src/argv.py reads Hydra's private argument parser to tell overrides from flags and their values; switched
    off, an argument holding '=' that is not a flag is taken as an override (a flag's value too)."""
    from src import argv

    line = ["-m", "-cd", "/tmp/conf=copy", "layer=fc6,fc7", "--cfg", "job"]
    assert argv.ARGS_GUARD.allowed() and argv._overrides(line) == ["layer=fc6,fc7"]
    monkeypatch.setenv("TRANSFER_PATCH_HYDRA_ARGS", "0")
    assert argv._overrides(line) == ["/tmp/conf=copy", "layer=fc6,fc7"]
