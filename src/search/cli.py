"""Command-line handling before Hydra sees the arguments: `hydra.sweeper.storage=URL` (its password), overlays
that declare MULTIRUN, `replicates=N` (source seeds 0..N-1, target samples tied) and the `report.*` keys.

A password in the URL is moved to `PGPASSWORD` (libpq reads it, as it reads `~/.pgpass`; SLURM jobs inherit the
environment) and removed from the URL, so it is in no `.hydra/*.yaml`, log line, `result.json` or report. A URL
whose database driver is not installed fails here in one line naming the extra to install. No Optuna or torch.
"""

from __future__ import annotations

import os
from typing import MutableMapping

from omegaconf import OmegaConf

import src
from src.errors import ConfigError
from src.record import FINDING_IDS

STORAGE_ARG = "hydra.sweeper.storage="
EXTRA = "pip install -e '.[cluster]'"


class StorageError(ValueError):
    """A storage URL the installed drivers cannot open; the message is one line."""


def redact(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password or None)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(f"{STORAGE_ARG}{url.split('@')[-1]}: not a database URL ({e})") from None
    if parsed.password is None:
        return url, None
    return parsed._replace(password=None).render_as_string(hide_password=False), str(parsed.password)


def check_driver(url: str) -> None:
    """Raise StorageError (one line) if the URL's database driver cannot be imported."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    parsed = make_url(url)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StorageError(f"{STORAGE_ARG}{url}: SQLAlchemy has no driver {parsed.drivername!r}; "
                           f"for PostgreSQL use postgresql:// (psycopg 3: {EXTRA})") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise StorageError(
            f"{STORAGE_ARG}{url}: the {dialect.driver} driver for {dialect.name} is not installed ({e.name}); "
            f"install the cluster extra (psycopg 3, for postgresql:// URLs): {EXTRA}"
        ) from None


def prepare_storage_args(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """argv with any `hydra.sweeper.storage=` URL stripped of its password (moved to PGPASSWORD) and checked."""
    out = []
    for arg in argv:
        if arg.startswith(STORAGE_ARG) and "://" in arg:
            url, password = redact(arg[len(STORAGE_ARG):])
            if password is not None:
                environ["PGPASSWORD"] = password
            check_driver(url)
            arg = STORAGE_ARG + url
        out.append(arg)
    return out


OVERLAY_GROUPS = ("search", "experiment")


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


REPLICATES_ARG = "replicates="
REPLICATES_MAX = 1000


def expand_replicates(argv: list[str]) -> list[str]:
    """`replicates=N` -> source seeds 0..N-1 with each job's target sample tied to its source seed.

    The report's replicate unit is the source seed (`seed`: source data, initialisation, batch order); tying
    `target.data.seed` to it gives every replicate a new target sample too, without crossing the two (a crossed
    seed x target-seed design spends jobs on target samples the report averages within a seed anyway). N >= 2 is a
    sweep, so it also asks for MULTIRUN. A study's yaml says how many seeds its verdicts need (`report.min_seeds`).
    """
    found = [a for a in argv if a.lstrip("+").startswith(REPLICATES_ARG)]
    if not found:
        return argv
    if len(found) > 1:
        raise ConfigError(f"replicates= is given {len(found)} times ({', '.join(found)}); give it once")
    value = found[0].lstrip("+")[len(REPLICATES_ARG):]
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= REPLICATES_MAX or str(n) != value.strip():
        raise ConfigError(f"replicates={value!r} must be an integer; valid: 1..{REPLICATES_MAX}")
    clash = [a for a in argv if a.lstrip("+~").split("=", 1)[0] in ("seed", "target.data.seed")]
    if clash:
        raise ConfigError(f"replicates={n} sets seed and target.data.seed itself; drop {', '.join(clash)} "
                              f"(or drop replicates= and sweep the seeds by hand)")
    out = [a for a in argv if a is not found[0]]
    out += [f"seed={','.join(str(i) for i in range(n))}", "target.data.seed=${seed}"]
    multirun = any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in argv)
    return out + (["hydra.mode=MULTIRUN"] if n > 1 and not multirun else [])


def check_report_args(argv: list[str]) -> None:
    """`report.primary=` / `report.min_seeds=` from the command line, checked before any job runs (the report reads
    them only when the sweep has ended)."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "report.primary" and value not in ("null", *FINDING_IDS):
            raise ConfigError(f"report.primary={value!r} is unknown; valid: null, {', '.join(FINDING_IDS)}")
        if key == "report.min_seeds" and not (value.isdigit() and int(value) >= 1):
            raise ConfigError(f"report.min_seeds={value!r} must be a positive integer")
