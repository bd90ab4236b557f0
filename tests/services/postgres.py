"""A real PostgreSQL 15 server on loopback: Debian's binaries, a fresh cluster in a temp dir, a test password.

PostgreSQL refuses to run as root, so when the tests run as root (CI) `initdb` and `postgres` run as the
unprivileged `postgres` user the Debian package creates (through `runuser`), in a temp dir that user owns. The
server listens on 127.0.0.1 at a free port only (no Unix socket), with scram-sha-256 password authentication for
the one role it has; `stop()` stops it (pg_ctl stop -m immediate) and removes the dir.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.services import ServiceUnavailable, apt_ensure, free_port, port_open, wait_until

BIN = Path("/usr/lib/postgresql/15/bin")
PACKAGES = {"postgresql-15": str(BIN / "postgres"), "postgresql-client-15": "psql"}
RUN_AS = "postgres"


class PostgresServer:
    """`PostgresServer().start()`; `url(db)` without the password (it is `password`, for PGPASSWORD)."""

    user = "tf_test"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tf-postgres-"))
        self.data = self.root / "data"
        self.password = "pw-" + secrets.token_hex(12)
        self.port = 0

    def _as_server_user(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", RUN_AS, "--", *cmd)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if r.returncode != 0:
            raise ServiceUnavailable(f"{' '.join(cmd[:4])}... failed: {(r.stderr or r.stdout).strip()[-600:]}")
        return r

    def start(self) -> "PostgresServer":
        apt_ensure(PACKAGES)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(RUN_AS)  # created by the postgresql package
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        self._as_server_user(str(BIN / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                             "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        self.port = free_port()
        self._as_server_user(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
            "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off "
                  "-c max_connections=100",
            "start")
        wait_until(lambda: port_open(self.port), 30, f"PostgreSQL on 127.0.0.1:{self.port}")
        return self

    def url(self, db: str = "postgres") -> str:
        """An SQLAlchemy URL (psycopg 3 driver, SQLAlchemy 2's default) without the password."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.port and (self.data / "postmaster.pid").exists():
            try:
                self._as_server_user(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except ServiceUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
