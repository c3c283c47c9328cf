"""`fleet up --until-idle` stops once no attempt is open, and asks the database nothing while it holds one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import celery.worker.state
import pytest
from sqlalchemy import event

from db.engine import Database
from tests.db.test_state_machine import db
from workers import serve
from workers.runtime import LeaseBook
from workers.serve import IDLE_CHECK_SECONDS, _stop_when_idle

__all__ = ["db"]


@pytest.fixture
def stop_flag() -> Iterator[None]:
    celery.worker.state.should_stop = None
    yield
    celery.worker.state.should_stop = None


def test_the_worker_stops_when_idle_but_not_while_it_holds_an_attempt(db: Database, stop_flag: None) -> None:
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    held, stopped = LeaseBook(), threading.Event()
    held.hold("token", 1)
    watcher = threading.Thread(target=_stop_when_idle, args=(db, stopped, held), daemon=True)
    watcher.start()
    watcher.join(timeout=IDLE_CHECK_SECONDS * 5)
    assert watcher.is_alive() and celery.worker.state.should_stop is None  # its own attempt is still open
    assert statements == []
    held.drop("token")
    watcher.join(timeout=10)
    assert not watcher.is_alive() and celery.worker.state.should_stop == 0
    assert statements  # idle on its side: the database decides


def test_the_database_is_asked_as_soon_as_the_last_attempt_ends(
    db: Database, stop_flag: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "IDLE_CHECK_SECONDS", 60.0)  # a watcher that polled would take a minute
    held, stopped = LeaseBook(), threading.Event()
    held.hold("agent", 1)
    held.hold("verification", 2)
    watcher = threading.Thread(target=_stop_when_idle, args=(db, stopped, held), daemon=True)
    watcher.start()
    held.drop("agent")
    watcher.join(timeout=0.5)
    assert watcher.is_alive()  # one still held
    held.drop("verification")
    watcher.join(timeout=20)
    assert not watcher.is_alive() and celery.worker.state.should_stop == 0
