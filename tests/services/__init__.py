"""Real components the tests talk to (SLURM, PostgreSQL, Chromium, an MLflow server), started by the project.

Each service module installs the Debian packages it needs when they are missing (apt-get: CI runs as root on
Debian 12 with the registries reachable; the Python packages are the project's extras, which `make test` installs),
starts the service on a free loopback port, and tears it down.
This module holds the shared plumbing: installing, free ports, bounded waits. Nothing here talks to any address
other than loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Callable

from filelock import FileLock

# One apt install at a time across test processes (dpkg has its own lock, but fails instead of waiting).
_INSTALL_LOCK = "/tmp/transferfactors-test-install.lock"


class ServiceUnavailable(RuntimeError):
    """A real component could not be installed or started; the message says what was tried."""


def apt_ensure(packages: dict[str, str], timeout: float = 900) -> None:
    """Install the Debian packages whose command (dict value: an executable name or absolute path) is missing."""
    missing = [pkg for pkg, exe in packages.items() if not (shutil.which(exe) or os.path.exists(exe))]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceUnavailable(f"need root to apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with FileLock(_INSTALL_LOCK, timeout=timeout):
        missing = [pkg for pkg, exe in packages.items() if not (shutil.which(exe) or os.path.exists(exe))]
        if not missing:
            return
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0:
                raise ServiceUnavailable(f"{' '.join(cmd)} failed: {r.stderr.strip().splitlines()[-1:]}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `ready()` until it is true; a bounded loop that raises ServiceUnavailable naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(interval)
    raise ServiceUnavailable(f"{what} not ready after {timeout:.0f} s")
