"""The command line before Hydra sees it (`python -m src.main ARGS`, and each worker of `src.search.workers`).

Hydra prints and saves the overrides and builds the sweeper before any job runs, so what must happen earlier
happens here, in one place:
  - an overlay that declares `hydra.mode: MULTIRUN` (`experiment=...`, `search=...`) makes the run a multirun;
  - a study storage URL loses its password (moved to PGPASSWORD: `src.search.cli`), its driver is checked, and
    its database server must answer;
  - `logger.tracking_uri=http(s)://...` must answer (a tracker given in a config file is checked by
    `src.tracking.check` before the job's work);
  - sweeper settings Hydra would use before our config check runs (`hydra.sweeper.n_trials`) are range-checked.
Every problem is a `ConfigError` with one line. Torch-free.
"""

from __future__ import annotations

import os
from typing import MutableMapping

from omegaconf import OmegaConf

import src
from src.errors import ConfigError
from src.schema import Int

OVERLAY_GROUPS = ("search", "experiment")
N_TRIALS = Int(1, 100_000, "Optuna trials")


def overlay_multirun_args(argv: list[str]) -> list[str]:
    """Add `hydra.mode=MULTIRUN` when a chosen overlay (search=..., experiment=...) declares it.

    Hydra 1.4 only honours `hydra.mode` from the primary config or the command line, not from a config group,
    so `python -m src.main search=factors_tpe` would otherwise run a single job. The overlays keep
    `hydra.mode: MULTIRUN` (it documents them and agrees with this), and this makes it take effect.
    """
    if any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in argv):
        return argv
    for arg in argv:
        group, _, option = arg.partition("=")
        path = src.REPO_ROOT / "conf" / group / f"{option}.yaml"
        if group in OVERLAY_GROUPS and path.is_file():
            mode = OmegaConf.select(OmegaConf.load(path), "hydra.mode", default=None)
            if str(mode) == "MULTIRUN":
                return argv + ["hydra.mode=MULTIRUN"]
    return argv


def check_sweeper_overrides(argv: list[str]) -> None:
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra.sweeper.n_trials":
            try:
                n = int(value)
            except ValueError:
                raise ConfigError(f"hydra.sweeper.n_trials={value!r} must be an integer; valid: "
                                  f"{N_TRIALS.valid()}") from None
            N_TRIALS.check(key, n)


def check_services(argv: list[str]) -> None:
    """The tracking server and study database named on the command line answer (a short connection each)."""
    from src.services import check_http, check_tcp

    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "logger.tracking_uri" and value.startswith(("http://", "https://")):
            check_http(key, value, "start the server (mlflow server --host 127.0.0.1 --port 5000) or leave "
                                   "logger.tracking_uri=null for a local store in the sweep dir")
        elif key == "hydra.sweeper.storage" and value.startswith(("postgresql", "mysql")):
            check_tcp(key, value, 5432 if value.startswith("postgresql") else 3306,
                      "start the database server or fix the host and port (the password goes in PGPASSWORD)")


def prepare(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """`argv` (without the program name) checked and rewritten as described in the module docstring."""
    from src.search.cli import prepare_storage_args

    check_sweeper_overrides(argv)
    argv = prepare_storage_args(overlay_multirun_args(argv), environ)
    check_services(argv)
    return argv
