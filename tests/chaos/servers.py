"""Private servers the chaos suite may stop and restart: a Redis and a PostgreSQL cluster of its own.

The shared Redis (6379) and PostgreSQL (5432) serve every other test and engineer and are never touched: each
server here runs on a free port from a temporary folder, and goes with it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

POSTGRES_USER = "postgres"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip locally, fail under CI=true (where the servers are required), as tests/conftest.py does."""
    if IN_CI:
        pytest.fail(what + " (CI=true: the chaos suite's servers are required)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout:g}s") from None
            time.sleep(0.05)


class PrivateRedis:
    """redis-server with no persistence on a free port: a restart loses every message, as in the audit."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            missing("redis-server is not installed")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="fleet-chaos-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*argv, "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_listening(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # no save, no goodbye: what a crash or an OOM kill leaves
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, pg_ctl as the postgres user) on a free port, trust auth."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found or os.geteuid() != 0 or not shutil.which("runuser"):
            missing("a private PostgreSQL needs its binaries, root and runuser")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="fleet-chaos-pg-"))
        user = pwd.getpwnam(POSTGRES_USER)
        os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.data = self.folder / "data"
        self._as_postgres(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", POSTGRES_USER, "--no-sync")

    def _as_postgres(self, *argv: object) -> None:
        subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", *map(str, argv)], check=True, capture_output=True, timeout=120
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off -c max_connections=300"
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.folder / "log", "-w", "start")

    def stop(self) -> None:
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def terminate_backends(self, database: str) -> int:
        """pg_terminate_backend on every connection to database: what an operator's kill or a failover does."""
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :name"
                return int(conn.execute(text(query), {"name": database}).scalar() or 0)
        finally:
            admin.dispose()

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
