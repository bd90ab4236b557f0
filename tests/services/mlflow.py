"""A real MLflow tracking server on a free loopback port (`mlflow server`, SQLite backend in a temp dir)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from tests.services import ServiceUnavailable, free_port, port_open, wait_until


@contextlib.contextmanager
def mlflow_server(workdir: Path, timeout: float = 120) -> Iterator[str]:
    """Start `mlflow server` on 127.0.0.1:<free port>, yield its URI, stop it (and only it) afterwards."""
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if exe is None:  # the `tracking` extra, which `make test` installs
        raise ServiceUnavailable("no mlflow command next to this Python: pip install -e '.[tracking]'")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (workdir / "mlflow-server.log").open("w")
    proc = subprocess.Popen(
        [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
         "--artifacts-destination", str(workdir / "artifacts")],
        # No job-execution workers: they run MLflow's GenAI jobs (none here) as eight extra processes, each as
        # costly to start as the server itself; tracking is served the same without them.
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise ServiceUnavailable(f"mlflow server exited: {(workdir / 'mlflow-server.log').read_text()[-800:]}")
            return port_open(port)

        wait_until(ready, timeout, f"mlflow server on 127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        # Its own session (the server and its workers, nothing else): SIGTERM, and SIGKILL after a short grace. The
        # test has read what it needs; a graceful stop waits for the clients' idle connections, for ~10 s.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
