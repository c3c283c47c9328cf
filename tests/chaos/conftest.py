"""The chaos suite's fleet: team workers as real processes on a private Redis and a private PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Worker
from tests.chaos.harness import wait_until
from tests.chaos.servers import PrivatePostgres, PrivateRedis
from tests.conftest import Fleet, make_test_fleet

# Short leases and quick passes, so a fault and its recovery fit in seconds; the agents write a ledger outside
# their worktree, so they run unsandboxed.
CHAOS_ENV = {
    "FLEET_LEASE_SECONDS": "6",
    "FLEET_HEARTBEAT_SECONDS": "1",
    "FLEET_RECONCILE_SECONDS": "1",
    "FLEET_RESEND_IDLE_SECONDS": "3",
    "FLEET_WRITE_RETRY_SECONDS": "20",
    "FLEET_SHUTDOWN_GRACE_SECONDS": "5",
    "FLEET_AGENT_SANDBOX": "false",
}


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@dataclass
class Chaos:
    """A team fleet on private servers, its worker processes, and the faults to inject into them."""

    fleet: Fleet
    postgres: PrivatePostgres
    redis: PrivateRedis
    database: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.fleet.tmp / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`fleet ARGS` as a process of its own (its own session, so kill -9 takes its children), logged to a file."""
        with open(self.log(name), "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "fleet", *args],
                env=self.fleet.env,
                cwd=self.fleet.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def worker(self, name: str, slots: int = 3) -> subprocess.Popen[bytes]:
        process = self.start(name, "worker", "--concurrency", str(slots))
        wait_until(lambda: bool(self.worker_ids(process)), 60, f"worker {name} to beat")
        return process

    def worker_ids(self, process: subprocess.Popen[bytes]) -> set[str]:
        with self.fleet.db().session() as s:
            return set(s.scalars(select(Worker.id).where(Worker.pid == process.pid, Worker.stopped_at.is_(None))))

    def kill(self, name: str) -> set[str]:
        """kill -9 the process and everything it started; returns the worker ids it had."""
        process = self.processes.pop(name)
        ids = self.worker_ids(process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return ids

    def logs(self) -> list[Path]:
        return [*self.fleet.tmp.glob("*.log"), self.fleet.home / "logs" / "worker.log"]

    def log_text(self) -> str:
        return "".join(path.read_text() for path in self.logs() if path.exists())

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


@pytest.fixture
def chaos(tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis) -> Iterator[Chaos]:
    database = f"fleet_chaos_{uuid.uuid4().hex[:8]}"
    url = private_postgres.create_database(database)
    fleet = make_test_fleet(tmp_path, url, private_redis.url, **CHAOS_ENV)
    fleet.sample_repo()
    chaos = Chaos(fleet, private_postgres, private_redis, database)
    yield chaos
    chaos.stop_all()
