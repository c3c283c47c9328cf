"""A worker stores its running agents' output in one transaction per interval, redacted, and only while they run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import event

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.models import Attempt
from tests.db.test_state_machine import db, lease
from workers.transcripts import LiveTranscripts

__all__ = ["db"]
SECRET = "sk-live-" + "7" * 24


def _running(db: Database, count: int) -> list[tuple[int, queries.Lease]]:
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        ticket = queries.add_ticket(
            s, ["shell"] * count, repo_id=repo.id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
        attempts = [queries.add_attempt(s, run, "prompt").id for run in ticket.runs]
    held = [(attempt_id, lease(f"worker-{n}")) for n, attempt_id in enumerate(attempts)]
    with db.session() as s:
        for attempt_id, token in held:
            assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, token)
    return held


def _transcripts(db: Database) -> list[str]:
    with db.session() as s:
        return [a.transcript for a in s.query(Attempt).order_by(Attempt.id)]


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    """The first word of each statement sent to the database, in order."""
    sent: list[str] = []
    record = lambda *args: sent.append(args[2].split()[0])  # noqa: E731  (conn, cursor, statement, ...)
    event.listen(db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(db.engine, "before_cursor_execute", record)


def test_every_grown_output_is_stored_in_one_statement_redacted_and_an_unchanged_one_costs_nothing(
    db: Database, statements: list[str]
) -> None:
    held = _running(db, 3)
    live = LiveTranscripts(db, flush_seconds=60.0, limit_bytes=1000)
    with ExitStack() as stack:
        first, second, third = (stack.enter_context(live.watch(a, token, [SECRET])) for a, token in held)
        first.write(b"step 1\n")
        third.write(f"token {SECRET}\n".encode())
        statements.clear()
        assert live.flush() == 2
        assert statements.count("UPDATE") == 1  # one executemany for every grown output
        assert _transcripts(db) == ["step 1\n", "", "token [redacted]\n"]
        statements.clear()
        assert live.flush() == 0 and statements == []  # nothing grew: no transaction at all
        second.write(b"x" * 5000)
        assert live.flush() == 1
        assert "bytes omitted" in _transcripts(db)[1]  # bounded like the final transcript
    first.write(b"after the block\n")
    assert live.flush() == 0  # an attempt no longer watched is not written


def test_an_output_whose_attempt_moved_on_or_lost_its_lease_is_not_stored(db: Database) -> None:
    (moved_on, token), (taken_over, old) = _running(db, 2)
    live = LiveTranscripts(db, flush_seconds=60.0, limit_bytes=1000)
    with live.watch(moved_on, token, []) as one, live.watch(taken_over, old, []) as other:
        with db.session() as s:
            assert queries.advance(s, moved_on, token, AttemptStatus.VERIFY_QUEUED, transcript="final")
            assert queries.release(s, taken_over, old) == AttemptStatus.QUEUED
            assert queries.claim(s, taken_over, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease("newcomer"))
        one.write(b"late\n")
        other.write(b"zombie\n")
        assert live.flush() == 2
    assert _transcripts(db) == ["final", ""]


def test_the_flusher_thread_stores_output_every_interval_until_stopped(db: Database) -> None:
    [(attempt_id, token)] = _running(db, 1)
    live = LiveTranscripts(db, flush_seconds=0.05, limit_bytes=1000)
    live.start()
    try:
        with live.watch(attempt_id, token, []) as output:
            output.write(b"working\n")
            for _ in range(200):
                if _transcripts(db) == ["working\n"]:
                    break
                time.sleep(0.05)
            assert _transcripts(db) == ["working\n"]
    finally:
        live.stop()
