"""Headless Chromium (Debian's `chromium` package) for tests that open a generated page like a user would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.services import ServiceUnavailable, apt_ensure


def chromium() -> str:
    """The chromium executable, installed with apt-get when missing."""
    apt_ensure({"chromium": "chromium"})
    exe = shutil.which("chromium")
    if exe is None:
        raise ServiceUnavailable("chromium is not on PATH after installing the chromium package")
    return exe


def _run(page: Path, profile: Path, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root; the profile dir keeps parallel runs apart; virtual time lets onload scripts
    # finish before the DOM is dumped. file:// only: the page must need no network.
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *flags, page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise ServiceUnavailable(f"chromium exited {r.returncode}: {r.stderr.strip()[-800:]}")
    return r


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran (chromium --dump-dom)."""
    return _run(page, profile, "--dump-dom").stdout


def screenshot(page: Path, png: Path, profile: Path, size: str = "1280,4000") -> Path:
    """A full-width screenshot of the page (chromium --screenshot)."""
    _run(page, profile, f"--screenshot={png.resolve()}", f"--window-size={size}", "--hide-scrollbars")
    if not png.exists() or png.stat().st_size == 0:
        raise ServiceUnavailable(f"chromium wrote no screenshot at {png}")
    return png
