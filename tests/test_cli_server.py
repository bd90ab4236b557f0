"""The tests' CLI server (tests/cli_server.py): which runs it may fork, and that a forked run is the CLI."""

from __future__ import annotations

import os

from tests.conftest import TINY, _server_for, run_cli


def test_runs_fork_after_this_process_imported_what_sets_import_time_variables():
    """Lightning sets import-time variables of its own when imported (PYTORCH_NVML_BASED_CUDA_CHECK): a test process
    that has imported it must still hand its CLI runs to the server, whose imports set the same values."""
    import pytorch_lightning  # noqa: F401

    env = dict(os.environ)
    server = _server_for(env)
    assert server is not None and server.imported_env is not None
    assert server.imported_env.get("PYTORCH_NVML_BASED_CUDA_CHECK") == env.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    # A variable a library reads at import, set to another value than the server had: a fresh interpreter.
    threads = str(int(server.imported_env.get("OMP_NUM_THREADS", "1")) + 1)
    assert _server_for({**env, "OMP_NUM_THREADS": threads}) is None
    assert _server_for({**env, "TRANSFER_CACHE_DIR": "/elsewhere"}) is server  # not read at import


def test_a_forked_run_is_the_cli(tmp_path):
    """A run the server forks exits as `python -m src.main` does: bad input is one line on stderr and exit code 1."""
    server = _server_for(dict(os.environ))
    before = server.cpu
    bad = run_cli("layer=fc99", *TINY)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "fc99" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert server.cpu > before  # the server forked it (the CPU it reports is the forked runs')
