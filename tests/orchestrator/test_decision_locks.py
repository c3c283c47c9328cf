"""Cancel and retry read their ticket under its row lock, in the transaction that checks the delivery claim and
writes the status: on PostgreSQL a claim committed while a cancel was between its read and its write let the cancel
in, and the approval failed after its push, the diff delivered and the ticket cancelled. (On SQLite the writers take
turns for the whole transaction, so nothing can commit in between.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from db import queries
from db.engine import Database
from db.lifecycle import TicketStatus
from db.migrate import upgrade
from orchestrator import review
from system.settings import Settings
from tests.conftest import _truncate_all
from tests.forge.helpers import StubDispatcher
from tests.orchestrator.test_delivering import approving, blocking_remote, in_thread, reviewable, shop, wait_for_file

WAITING_ON_LOCKS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
def pg(pg_database: str) -> Database:
    _truncate_all(pg_database)
    database = Database(pg_database)
    upgrade(database)
    return database


def waiting_on_locks(db: Database, count: int, timeout: float = 30.0) -> None:
    """Until `count` transactions of the database wait for a lock."""
    deadline = time.monotonic() + timeout
    while True:
        with db.reading() as conn:
            if conn.execute(WAITING_ON_LOCKS).scalar_one() == count:
                return
        assert time.monotonic() < deadline, f"never {count} transactions waiting for a lock"
        time.sleep(0.05)


def test_a_cancel_racing_an_approvals_claim_is_refused_and_the_delivery_stands(pg: Database, tmp_path: Path) -> None:
    """The test holds the ticket's row; the approval waits for it first, the cancel second. Let go, the approval's
    claim commits first: the cancel, which read the ticket before that claim and wrote after it, cancelled the
    ticket the approval then delivered."""
    work, base = shop(tmp_path)
    bare, started, release = blocking_remote(tmp_path, work)
    ticket = reviewable(pg, work, base, str(bare))
    settings = Settings(home=tmp_path / "home")
    with pg.session() as s:
        queries.get_ticket(s, ticket, lock=True)
        approval, approved = approving(pg, settings, ticket)
        waiting_on_locks(pg, 1)
        cancelling, cancelled = in_thread(lambda: review.cancel(pg, ticket, "erin"))
        waiting_on_locks(pg, 2)
    try:
        cancelling.join(60)
        wait_for_file(started)
    finally:
        release.touch()
        approval.join(60)
    [refused] = cancelled
    assert str(refused) == f"ticket {ticket} is being delivered by ann; try again in a few seconds"
    [decision] = approved
    assert isinstance(decision, review.Decision) and decision.status == TicketStatus.APPROVED, decision
    with pg.session() as s:
        found = queries.get_ticket(s, ticket)
        assert (found.status, found.cancelled_by, found.delivering_by) == ("approved", None, None)


def test_two_retries_at_once_start_the_ticket_once(pg: Database, tmp_path: Path) -> None:
    """Both retries read the rejected ticket before either wrote: each gave every run a new attempt."""
    work, base = shop(tmp_path)
    ticket = reviewable(pg, work, base, str(tmp_path / "nowhere.git"))
    settings = Settings(home=tmp_path / "home")
    assert review.reject(pg, StubDispatcher(), settings, ticket, "bob", "").status == TicketStatus.REJECTED
    with pg.session() as s:
        queries.get_ticket(s, ticket, lock=True)
        first, retried = in_thread(lambda: review.retry(pg, StubDispatcher(), settings, ticket, "dan"))
        waiting_on_locks(pg, 1)
        second, again = in_thread(lambda: review.retry(pg, StubDispatcher(), settings, ticket, "erin"))
        waiting_on_locks(pg, 2)
    first.join(60)
    second.join(60)
    [[attempt]] = retried
    [refused] = again
    assert str(refused) == f"ticket {ticket} is queued; only failed, error, cancelled or rejected tickets retry"
    with pg.session() as s:
        found = queries.load_ticket_tree(s, ticket)
        assert found.status == "queued"
        assert [a.id for a in found.runs[0].attempts][1:] == [attempt]


def test_a_decisions_lock_lets_workers_write_rows_that_point_at_the_ticket(pg: Database, tmp_path: Path) -> None:
    """A cancel holds its ticket while it stops the attempts: a worker holding an attempt and writing the ticket's
    events must not wait for it (FOR UPDATE made them wait on each other until PostgreSQL broke the deadlock)."""
    work, base = shop(tmp_path)
    ticket = reviewable(pg, work, base, str(tmp_path / "nowhere.git"))
    with pg.session() as s:
        queries.get_ticket(s, ticket, lock=True)
        with pg.session() as worker:
            worker.execute(text("SET LOCAL lock_timeout = '2s'"))
            queries.log_event(worker, "agent_output", "still running", ticket_id=ticket)
    with pg.session() as s:
        assert [e.message for e in queries.ticket_events(s, ticket)][-1] == "still running"
