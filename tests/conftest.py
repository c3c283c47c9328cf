"""Shared fixtures: real SQLite and PostgreSQL databases, the embedded broker, real Redis, and the test Fleet.

A test that needs a server skips when the server is missing, except under CI=true, where it fails.
Each test process (an xdist worker, of any session on the machine) has its own PostgreSQL database and Redis
database number; every Fleet lives under the test's own tmp folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import typer

    from db.engine import Database
    from workers.runtime import WorkerRuntime

PG_ADMIN_URL = os.environ.get("FLEET_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_REDIS_DATABASES = range(1, 14)  # of Redis's default 16: not 0, anyone's default, nor 14, the benchmark's

# xdist workers start with COLUMNS=80 and LINES=24; rich fixes a console's size from them when the CLI module is
# imported, so in-process commands would ignore a test's COLUMNS. A `fleet` process sizes its tables from its own
# environment: so do these.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


def fleet_app() -> typer.Typer:
    """The `fleet` Typer app: the one place the tests name the module that defines it."""
    from fleet.cli import app

    return app


@functools.cache
def _redis_url() -> str:
    """FLEET_TEST_REDIS_URL, else a Redis database that no other test process on this machine holds: each is taken
    with a lock file held for the process's life, so that two test sessions at once (a pytest of each checkout),
    whose xdist workers are both gw0, gw1, ..., never flush or read each other's queues."""
    configured = os.environ.get("FLEET_TEST_REDIS_URL")
    if configured:
        return configured
    for number in TEST_REDIS_DATABASES:
        lock = open(Path(tempfile.gettempdir()) / f"fleet-test-redis-{number}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held_locks.append(lock)
        return f"redis://127.0.0.1:6379/{number}"
    pytest.fail(f"every Redis database of {TEST_REDIS_DATABASES} is held by another test process on this machine")


_held_locks: list[IO[str]] = []


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_server(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a server the test needs is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: servers are required)")
    pytest.skip(message)


@contextlib.contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped when the block ends."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    need_server("PostgreSQL", "127.0.0.1", 5432)
    with new_pg_database("fleet_test") as url:
        yield url


def _truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    if tables:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'fleet.db'}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_all(url)
    return url


@pytest.fixture
def redis_url() -> str:
    """This worker's Redis database (15 without xdist), flushed before the test."""
    need_server("Redis", "127.0.0.1", 6379)
    import redis

    url = _redis_url()
    redis.Redis.from_url(url).flushdb()
    return url


# --- the test Fleet ---------------------------------------------------------------------------------------------

PROG = f"{os.path.basename(sys.executable)} -m orchestrator"
# Commands that start workers or servers, or run until stopped: always a `fleet` process of their own.
OWN_PROCESS = frozenset({"up", "worker", "web", "watch", "demo"})
FAST_LEASES = {
    "FLEET_HEARTBEAT_SECONDS": "1",
    "FLEET_RECONCILE_SECONDS": "1",
    "FLEET_KILL_GRACE_SECONDS": "1",
    "FLEET_USER": "tester",
}
_in_process = threading.Lock()  # the runner swaps sys.stdout, os.environ and the folder: one call at a time


@dataclass
class Fleet:
    """One FLEET_HOME, database and broker; `run(...)` runs the CLI as a user would.

    Commands run in this process through Typer's runner (a process start costs about a second of imports), with
    this Fleet's environment and folder and settings read afresh; `up`, `worker`, `web`, `watch` and `demo`, and
    every command once `in_process` is False, run as a `fleet` process of their own.
    """

    home: Path
    env: dict[str, str]
    database_url: str
    tmp: Path
    in_process: bool = True

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        if self.in_process and args and args[0] not in OWN_PROCESS:
            return self.cli(*args, check=check)
        return self.cli_subprocess(*args, check=check, timeout=timeout)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`fleet ARGS` in this process; an uncaught exception shows on stderr as Python would print it."""
        from typer.testing import CliRunner

        env: dict[str, str | None] = {name: None for name in os.environ if name not in self.env}
        env.update(self.env)
        with _in_process, contextlib.chdir(self.tmp):
            result = CliRunner().invoke(fleet_app(), list(args), env=env, prog_name=PROG)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        proc = subprocess.CompletedProcess([PROG, *args], result.exit_code, result.stdout, stderr)
        return _checked(proc, args, check)

    def cli_subprocess(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """`fleet ARGS` as a process of its own, for what needs one (workers, signals, the entry point)."""
        proc = subprocess.run(
            [sys.executable, "-m", "fleet", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return _checked(proc, args, check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "fleet", *args],
            env=self.env,
            cwd=self.tmp,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def up(self, concurrency: int = 4) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--until-idle", "--concurrency", str(concurrency))

    def sample_repo(self, name: str = "calc") -> Path:
        from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

        path = self.tmp / name
        write_sample_repo(path)
        self.run("repo", "add", name, str(path), "--test-cmd", SAMPLE_TEST_CMD)
        return path

    def submit(self, *args: str) -> list[dict[str, Any]]:
        return self.json("submit", *args)  # type: ignore[no-any-return]

    def db(self) -> Database:
        from db.engine import Database

        return Database(self.database_url)


def _checked(
    proc: subprocess.CompletedProcess[str], args: tuple[str, ...], check: bool
) -> subprocess.CompletedProcess[str]:
    if check and proc.returncode != 0:
        raise AssertionError(f"fleet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_test_fleet(tmp: Path, database_url: str = "", broker_url: str = "", **env: str) -> Fleet:
    """A Fleet under tmp with fast leases: FLEET_HOME is tmp/home, the caller's FLEET_* variables are left out.

    Without database_url and broker_url, Fleet's defaults apply (SQLite in FLEET_HOME, the embedded broker), as on
    a laptop. env adds or overrides variables (FLEET_LEASE_SECONDS is 20 unless given).
    """
    home = tmp / "home"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    environment.update(FLEET_HOME=str(home), FLEET_LEASE_SECONDS="20", **FAST_LEASES)
    if database_url:
        environment["FLEET_DATABASE_URL"] = database_url
    if broker_url:
        environment["FLEET_BROKER_URL"] = broker_url
    environment.update(env)
    return Fleet(home=home, env=environment, database_url=database_url or f"sqlite:///{home / 'fleet.db'}", tmp=tmp)


MODES = {"embedded": ("sqlite", "embedded"), "team": ("postgresql", "redis")}
FleetFactory = Callable[[str], Fleet]


@pytest.fixture
def fleet_factory(request: pytest.FixtureRequest, tmp_path: Path) -> FleetFactory:
    """The test Fleet in a mode: embedded (SQLite + serverless broker) or team (PostgreSQL + Redis)."""

    def make(mode: str) -> Fleet:
        if MODES[mode] == ("sqlite", "embedded"):
            return make_test_fleet(tmp_path, f"sqlite:///{tmp_path / 'home' / 'fleet.db'}", "embedded")
        database_url: str = request.getfixturevalue("pg_database")
        _truncate_all(database_url)
        return make_test_fleet(tmp_path, database_url, request.getfixturevalue("redis_url"))

    return make


@pytest.fixture(params=["embedded", pytest.param("team", marks=pytest.mark.slow)])
def fleet(request: pytest.FixtureRequest, fleet_factory: FleetFactory) -> Fleet:
    """Embedded mode (SQLite + serverless broker) by default; team mode (PostgreSQL + Redis) with -m slow."""
    return fleet_factory(request.param)


@pytest.fixture(params=list(MODES))
def both_modes(request: pytest.FixtureRequest, fleet_factory: FleetFactory) -> Fleet:
    """Embedded and team mode, both in the default run: for the guarantees each backend must keep."""
    return fleet_factory(request.param)


@pytest.fixture
def embedded(tmp_path: Path) -> Fleet:
    """Only the embedded mode with Fleet's default database and broker, for tests about the command line."""
    return make_test_fleet(tmp_path)


def in_process_worker(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, queues: str, slots: int = 1) -> WorkerRuntime:
    """A worker of `slots` slots on `queues` in this process, on the fleet's database (made current) and broker."""
    from db.engine import Database
    from db.migrate import upgrade
    from system.settings import Settings
    from workers.celery_app import create_app
    from workers.queue import Dispatcher
    from workers.runtime import WorkerRuntime

    for name, value in fleet.env.items():
        if name.startswith("FLEET_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    db = Database(settings.db_url)
    upgrade(db)
    return WorkerRuntime(settings, db, Dispatcher(create_app(settings)), slots, queues)


@pytest.fixture
def team(fleet_factory: FleetFactory) -> Fleet:
    """Only team mode (PostgreSQL + Redis), for `fleet worker` on separate queues."""
    return fleet_factory("team")
