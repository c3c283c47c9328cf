"""A finished agent's outcome outlives its lease; release hands an attempt back with no verdict; a schema newer than
the code is refused; reasons people read carry no SQL, parameters or tracebacks."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db import queries
from db.engine import Database, log_failure, transient
from db.lifecycle import AttemptStatus, TicketStatus
from db.migrate import HEAD, SchemaTooNew, upgrade
from db.models import Attempt, Ticket, Verification, utcnow
from db.reasons import shown
from tests.db.test_state_machine import _ticket, db, lease

__all__ = ["db"]
LEAKS = ("[SQL", "[parameters", "Traceback", "SELECT", "sqlite3", "psycopg")


def _lapsed_after_its_agent_started(db: Database, attempt_id: int) -> None:
    """A first worker claims the attempt and starts its agent; then its lease lapses and the attempt waits again."""
    first = lease("first", seconds=0.01)
    with db.session() as s:
        queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, first)
        queries.start_agents(s, [(attempt_id, first)])
    time.sleep(0.05)
    with db.session() as s:
        assert queries.expire_leases(s) == [(attempt_id, AttemptStatus.QUEUED)]


def test_a_late_outcome_is_kept_for_the_next_worker_and_counts_no_repeat(db: Database) -> None:
    attempt_id = _ticket(db)
    first = lease("first", seconds=0.01)
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, first)
        assert queries.start_agents(s, [(attempt_id, first)]) == {attempt_id: 1}
    time.sleep(0.05)
    with db.session() as s:
        assert queries.expire_leases(s) == [(attempt_id, AttemptStatus.QUEUED)]
        assert not queries.advance(s, attempt_id, first, AttemptStatus.VERIFY_QUEUED, diff="d")  # fenced off
        assert queries.keep_agent_outcome(s, attempt_id, 1, diff="d", transcript="t", agent_finished_at=utcnow())
        assert not queries.keep_agent_outcome(s, attempt_id, 1, diff="x", agent_finished_at=utcnow())  # once only
    with db.session() as s:
        attempt = s.get(Attempt, attempt_id)
        assert attempt is not None
        assert (attempt.status, attempt.diff, attempt.agent_runs, attempt.agent_repeats) == ("queued", "d", 1, 0)


def test_the_next_claim_reads_the_attempt_as_one_row_with_the_kept_outcome_and_starts_the_ticket(
    db: Database,
) -> None:
    from workers.pipeline.job import job_of

    attempt_id = _ticket(db)
    _lapsed_after_its_agent_started(db, attempt_id)
    with db.session() as s:
        queries.keep_agent_outcome(s, attempt_id, 1, diff="d", transcript="t", agent_finished_at=utcnow())
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease("second"))
        row = queries.attempt_row(s, attempt_id)
        assert row["ticket_status"] == TicketStatus.QUEUED.value
        queries.start_tickets(s, [row["ticket_id"]])
        job = job_of(s, row)
    assert job.kept_agent is not None and (job.kept_agent["diff"], job.kept_agent["transcript"]) == ("d", "t")
    assert (job.attempt_id, job.number, job.agent, job.test_cmd, job.prompt) == (
        attempt_id,
        1,
        "shell",
        "true",
        "prompt",
    )
    with db.session() as s:
        assert s.get_one(Ticket, job.ticket_id).status == TicketStatus.RUNNING.value
        queries.start_tickets(s, [job.ticket_id])  # a running ticket stays as it is
        assert s.get_one(Ticket, job.ticket_id).status == TicketStatus.RUNNING.value
    with pytest.raises(queries.NotFound), db.session() as s:
        queries.attempt_row(s, attempt_id + 1000)


def test_an_outcome_that_comes_after_the_agent_started_again_counts_a_repeat(db: Database) -> None:
    attempt_id = _ticket(db)
    _lapsed_after_its_agent_started(db, attempt_id)
    second = lease("second")
    with db.session() as s:
        queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, second)
        # The outcome of start 1 had not arrived.
        assert queries.start_agents(s, [(attempt_id, second)]) == {attempt_id: 2}
        assert queries.keep_agent_outcome(s, attempt_id, 1, diff="d", agent_finished_at=utcnow())
    with db.session() as s:
        assert s.get(Attempt, attempt_id).agent_repeats == 1  # type: ignore[union-attr]


def test_release_hands_the_attempt_back_with_no_verdict(db: Database) -> None:
    attempt_id = _ticket(db)
    held = lease("w")
    with db.session() as s:
        queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, held)
        assert queries.release(s, attempt_id, lease("stranger")) is None
        assert queries.release(s, attempt_id, held) == AttemptStatus.QUEUED
        assert queries.release(s, attempt_id, held) is None
    with db.session() as s:
        attempt = s.get(Attempt, attempt_id)
        assert attempt is not None
        assert (attempt.status, attempt.lease_token, attempt.dispatched_at) == ("queued", None, None)
        assert s.query(Verification).count() == 0


def test_a_schema_newer_than_the_code_is_refused_with_both_revisions(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(SchemaTooNew) as refused:
        upgrade(db)
    assert "0999" in str(refused.value) and HEAD in str(refused.value)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD})


def test_a_database_error_stored_as_a_reason_loses_its_sql_parameters_and_traceback(db: Database) -> None:
    with pytest.raises(Exception) as failed, db.session() as s:
        s.execute(text("SELECT secret FROM no_such_table WHERE token = :token"), {"token": "hunter2"})
    raw = f"OperationalError: {failed.value}\nTraceback (most recent call last):\n  File x\nValueError: boom"
    assert transient(failed.value) or "[SQL" in raw  # a missing table is no outage, but it is real SQLAlchemy text
    attempt_id = _ticket(db)
    with db.session() as s:
        queries.add_verification(s, attempt_id, verdict="error", reasons=[raw])
        ticket = s.query(Ticket).one()
        queries.set_ticket_status(s, ticket, TicketStatus.ERROR, raw)
    with db.session() as s:
        stored = [s.query(Ticket).one().status_reason, *s.query(Verification).one().reasons]
    assert all(reason.startswith("OperationalError") for reason in stored)
    assert [r for r in stored if any(leak in r for leak in (*LEAKS, "hunter2"))] == []


def test_a_verification_with_a_field_it_has_not_is_refused_and_nothing_is_stored(db: Database) -> None:
    attempt_id = _ticket(db)
    with pytest.raises(TypeError, match="duraton"), db.session() as s:
        queries.add_verification(s, attempt_id, verdict="passed", duraton=1.5)
    with db.session() as s:
        assert s.query(Verification).count() == 0
        queries.add_verification(s, attempt_id, verdict="passed", duration=1.5)
    with db.session() as s:
        stored = s.query(Verification).one()
        assert (stored.verdict, stored.duration, stored.reasons, stored.flaky) == ("passed", 1.5, [], [])


def test_shown_keeps_plain_reasons_as_they_are() -> None:
    for reason in ("tests failed: a [SQL] b", "changes to tests/test_calc.py were reverted before the run"):
        assert shown(reason) == reason
    assert shown("x" * 5000).endswith("…") and len(shown("x" * 5000)) == 2000


def test_a_database_that_is_away_is_logged_as_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    away = Database("postgresql+psycopg2://postgres@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(Exception) as failed, away.session() as s:
        s.execute(text("SELECT 1"))
    log = logging.getLogger("fleet.test")
    with caplog.at_level(logging.WARNING, logger="fleet.test"):
        log_failure(log, "sending notifications", failed.value)
        try:
            raise ValueError("a bug")
        except ValueError as bug:
            log_failure(log, "sending notifications", bug)
    [outage, bug_record] = caplog.records
    assert (outage.levelno, outage.exc_info) == (logging.WARNING, None)
    assert outage.getMessage() == "sending notifications: database unreachable (OperationalError); retrying"
    assert bug_record.levelno == logging.ERROR and bug_record.exc_info is not None
    assert "Traceback" in caplog.text and "ValueError: a bug" in caplog.text


def test_every_connection_of_the_process_busy_is_an_outage_not_a_verdict(tmp_path: Path) -> None:
    # A hundred slots on a pool of twenty under a loaded machine: the pool's wait runs out. The attempt goes back
    # in line (transient), where it once ended as an `error` verdict naming the pool.
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, max_overflow=0, pool_timeout=0.1)
    with engine.connect(), pytest.raises(Exception) as waited:
        engine.connect()
    assert "QueuePool limit" in str(waited.value) and transient(waited.value)
    engine.dispose()


def test_the_threads_of_one_process_take_turns_on_sqlite_without_an_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'turns.db'}")
    with database.session() as s:
        s.execute(text("CREATE TABLE n (v INTEGER)"))

    def add(value: int) -> None:
        with database.session() as s:
            s.execute(text("INSERT INTO n VALUES (:v)"), {"v": value})

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(add, range(500)))
    with database.session() as s:
        assert s.execute(text("SELECT count(*), sum(v) FROM n")).one() == (500, sum(range(500)))
