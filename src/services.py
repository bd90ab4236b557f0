"""Fail fast on an external service that does not answer (an MLflow tracking server, a study database), before
the first job: one short connection attempt and one line naming the URL (password cut) and what to do, instead of
a client library retrying for minutes. Each URL is tried once per process. A leaf module (no torch)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from src.errors import ConfigError

TIMEOUT_S = 3.0
_answered: set[str] = set()


def redact(url: str) -> str:
    """The URL without its password (user@host stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")))


def check_http(key: str, url: str, fix: str) -> None:
    """An HTTP(S) server answers at `url` (any HTTP status counts: it is up); else ConfigError."""
    if url in _answered:
        return
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # it answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = getattr(e, "reason", e)
        raise ConfigError(f"{key}={redact(url)}: no server answers within {TIMEOUT_S:.0f} s ({why}); {fix}") from None
    _answered.add(url)


def check_tcp(key: str, url: str, default_port: int, fix: str) -> None:
    """Something accepts TCP connections at the URL's host and port (a database server); else ConfigError."""
    if url in _answered:
        return
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or default_port
    if not host:  # a Unix socket or the driver's default: nothing to try from here
        return
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"{key}={redact(url)}: nothing answers at {host}:{port} within {TIMEOUT_S:.0f} s "
                          f"({e.strerror or e}); {fix}") from None
    _answered.add(url)
