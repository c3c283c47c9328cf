"""A Fleet installation per test, driven through its real command line, in both modes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db.engine import Database
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command, write_sample_repo

SCRIPTED = list(scripted_command("")[:-1])


@dataclass
class Fleet:
    """One FLEET_HOME, database and broker; `fleet(...)` runs the CLI as a user would."""

    home: Path
    env: dict[str, str]
    database_url: str
    tmp: Path

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "fleet", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"fleet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

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
        path = self.tmp / name
        write_sample_repo(path)
        self.run("repo", "add", name, str(path), "--test-cmd", SAMPLE_TEST_CMD)
        return path

    def submit(self, *args: str) -> list[dict[str, Any]]:
        return self.json("submit", *args)  # type: ignore[no-any-return]

    def db(self) -> Database:
        return Database(self.database_url)


def scripted(script: str, *args: str) -> str:
    return shlex.join(scripted_command(script, *args))


def processes_with(marker: str) -> list[str]:
    """Command lines of live processes that mention marker (psutil is not a dependency: read /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if marker in text:
            found.append(text)
    return found


MODES = {"embedded": ("sqlite", "embedded"), "team": ("postgresql", "redis")}


@pytest.fixture(params=["embedded", pytest.param("team", marks=pytest.mark.slow)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    """Embedded mode (SQLite + serverless broker) by default; team mode (PostgreSQL + Redis) with -m slow."""
    return make_fleet(request, tmp_path)


@pytest.fixture(params=list(MODES))
def both_modes(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    """Embedded and team mode, both in the default run: for the guarantees each backend must keep."""
    return make_fleet(request, tmp_path)


def make_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    db_kind, broker_kind = MODES[request.param]
    if db_kind == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'home' / 'fleet.db'}"
    else:
        from tests.conftest import _truncate_all

        database_url = request.getfixturevalue("pg_database")
        _truncate_all(database_url)
    broker = "embedded" if broker_kind == "embedded" else request.getfixturevalue("redis_url")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FLEET_HOME=str(tmp_path / "home"),
        FLEET_DATABASE_URL=database_url,
        FLEET_BROKER_URL=broker,
        FLEET_LEASE_SECONDS="20",
        FLEET_HEARTBEAT_SECONDS="1",
        FLEET_RECONCILE_SECONDS="1",
        FLEET_KILL_GRACE_SECONDS="1",
        FLEET_USER="tester",
    )
    return Fleet(home=tmp_path / "home", env=env, database_url=database_url, tmp=tmp_path)


@pytest.fixture
def embedded(tmp_path: Path, request: pytest.FixtureRequest) -> Fleet:
    """Only the embedded mode, for tests about the command line rather than the backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FLEET_HOME=str(tmp_path / "home"),
        FLEET_LEASE_SECONDS="20",
        FLEET_HEARTBEAT_SECONDS="1",
        FLEET_RECONCILE_SECONDS="1",
        FLEET_KILL_GRACE_SECONDS="1",
        FLEET_USER="tester",
    )
    return Fleet(
        home=tmp_path / "home", env=env, database_url=f"sqlite:///{tmp_path / 'home' / 'fleet.db'}", tmp=tmp_path
    )


@pytest.fixture
def team(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    """Only team mode (PostgreSQL + Redis), for `fleet worker` on separate queues."""
    request.param = "team"  # make_fleet reads the mode from the request, as for the parametrized fixtures
    return make_fleet(request, tmp_path)
