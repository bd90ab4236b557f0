"""Command-line handling of `hydra.sweeper.storage=URL`, before Hydra sees (prints, saves) the URL (called by
`src.argv.prepare`; a leaf module, so the command line does not import the search package).

A password in the URL is moved to `PGPASSWORD` (libpq reads it, as it reads `~/.pgpass`; SLURM jobs inherit the
environment) and removed from the URL, so it is in no `.hydra/*.yaml`, log line, `result.json` or report. A URL
whose database driver is not installed fails here in one line naming the extra to install. No Optuna or torch.
"""

from __future__ import annotations

import os
from typing import MutableMapping

from src.errors import ConfigError

STORAGE_ARG = "hydra.sweeper.storage="
EXTRA = "pip install -e '.[cluster]'"


class StorageError(ConfigError):
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


def check_sqlite_dir(url: str) -> None:
    """Raise StorageError (one line) if an SQLite URL's file cannot be created: its directory is missing or not
    writable. SQLite says so only as `unable to open database file`, after Optuna's retries and once the sweep dir
    exists."""
    from sqlalchemy.engine import make_url

    if "${" in url:  # an interpolation, resolved by Hydra later: its value is not known here
        return
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    folder = os.path.dirname(os.path.abspath(parsed.database))
    if not os.path.isdir(folder):
        raise StorageError(f"{STORAGE_ARG}{url}: directory {folder} does not exist; create it or give an SQLite "
                           f"file in an existing directory")
    if not os.access(folder, os.W_OK):
        raise StorageError(f"{STORAGE_ARG}{url}: directory {folder} is not writable; give an SQLite file in a "
                           f"writable directory")


def prepare_storage_args(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """argv with any `hydra.sweeper.storage=` URL stripped of its password (moved to PGPASSWORD) and checked."""
    out = []
    for arg in argv:
        if arg.startswith(STORAGE_ARG) and "://" in arg:
            url, password = redact(arg[len(STORAGE_ARG):])
            if password is not None:
                environ["PGPASSWORD"] = password
            check_driver(url)
            check_sqlite_dir(url)
            arg = STORAGE_ARG + url
        out.append(arg)
    return out
