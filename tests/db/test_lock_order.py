"""Writers that share rows on PostgreSQL never wait for each other in crossed order: no deadlock stalls a worker.

The 400-slot benchmark (four worker processes) found about 180 deadlocks per 2,000 tickets, each a second of a
group of agents' ends waiting before PostgreSQL failed one side: the /metrics totals' rows, locked by attempt id
in each transaction's own order, and lease renewals crossing the rows an agent's end was moving on.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.models import Attempt, Run, utcnow
from db.queries.leases import Lease, advance, claim, renew_leases, store_live_transcripts, unclaimed, undelivered
from tests.db.test_metric_totals import new_run, totals
from workers.pipeline.agent_step import AgentEnd, record_outcomes

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SHARD = text("SELECT pg_backend_pid() % 64")  # the totals shard this connection writes (migration 0011)
Stamp = Callable[[Session], list[tuple[int, AttemptStatus]]]
NO_WAIT = "SET lock_timeout = '2s'"  # a wait turns into an error the test reports, instead of a stall
WAITS = "SET lock_timeout = '30s'"


def running_attempts(db: Database, count: int) -> list[tuple[int, Lease]]:
    """Attempts a worker has claimed: their ids consecutive, each with its lease."""
    run = new_run(db)
    taken = []
    with db.session() as s:
        ids = [queries.add_attempt(s, s.get_one(Run, run), "p").id for _ in range(count)]
    for attempt_id in ids:
        lease = Lease("w", uuid.uuid4().hex, 60)
        with db.session() as s:
            assert claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease)
        taken.append((attempt_id, lease))
    return taken


@contextmanager
def two_writers(db: Database) -> Iterator[tuple[Connection, Connection]]:
    """Two connections of different shards (their server process ids differ modulo 64), each failing any wait."""
    with ExitStack() as stack:
        first = stack.enter_context(db.engine.connect())
        shard = first.execute(SHARD).scalar()
        while True:
            second = stack.enter_context(db.engine.connect())
            if second.execute(SHARD).scalar() != shard:
                break
        for connection in (first, second):
            connection.exec_driver_sql(NO_WAIT)
            connection.commit()
        yield first, second


def agent_end(s: Session, attempt: tuple[int, Lease]) -> None:
    """What a group of agents' ends writes for each attempt (workers/pipeline/agent_step.py)."""
    attempt_id, lease = attempt
    assert advance(s, attempt_id, lease, AttemptStatus.VERIFY_QUEUED, agent_finished_at=utcnow())


def test_two_workers_recording_agent_ends_in_crossed_order_do_not_wait(migrated: Database) -> None:
    attempts = running_attempts(migrated, 18)
    x, y, after_y, after_x = attempts[0], attempts[1], attempts[17], attempts[16]  # ids 16 apart: a shard apart
    with two_writers(migrated) as (first, second), Session(bind=first) as one, Session(bind=second) as other:
        agent_end(one, x)
        agent_end(other, y)
        agent_end(one, after_y)  # waited for `other` while totals were kept by attempt id
        agent_end(other, after_x)  # and this one closed the cycle: a deadlock
        one.commit()
        other.commit()
    assert totals(migrated).agent_seconds.count == 4


def test_a_renewal_leaves_a_row_another_writer_holds_for_the_next_beat(migrated: Database) -> None:
    (busy_id, busy), (free_id, free) = running_attempts(migrated, 2)
    with two_writers(migrated) as (writer, renewer), Session(bind=writer) as live, Session(bind=renewer) as beat:
        store_live_transcripts(live, [(busy_id, busy, "output so far")])  # holds busy's row until it commits
        assert renew_leases(beat, "w", [busy.token, free.token], 600) == {busy.token, free.token}
        beat.commit()
        live.commit()
    with migrated.session() as s:
        expires = {attempt_id: at for attempt_id, at in s.execute(select(Attempt.id, Attempt.lease_expires_at))}
    later = utcnow() + timedelta(seconds=300)
    assert expires[free_id] is not None and expires[free_id] > later
    assert expires[busy_id] is not None and expires[busy_id] < later  # renewed by the next beat, not waited for


def test_a_renewal_renews_a_row_that_is_only_referenced(migrated: Database) -> None:
    """A row another transaction only points at (an event or a model call being recorded for the attempt holds a
    key-share lock on it) is renewed at once: the renewal's lock does not conflict with that one."""
    ((attempt_id, lease),) = running_attempts(migrated, 1)
    with two_writers(migrated) as (writer, renewer), Session(bind=writer) as events, Session(bind=renewer) as beat:
        queries.log_event(events, "warning", "an event of the attempt", attempt_id=attempt_id)
        assert renew_leases(beat, "w", [lease.token], 600) == {lease.token}
        beat.commit()
        events.commit()
    with migrated.session() as s:
        expires = s.get_one(Attempt, attempt_id).lease_expires_at
    assert expires is not None and expires > utcnow() + timedelta(seconds=300)


@pytest.mark.parametrize(
    "stamp", [lambda s: undelivered(s, 0.0), lambda s: unclaimed(s, 0.0, 10)], ids=["undelivered", "unclaimed"]
)
def test_a_re_send_stamp_skips_an_attempt_a_worker_is_claiming(migrated: Database, stamp: Stamp) -> None:
    """The reconciler stamps waiting attempts as sent again without waiting for a row a worker holds: that one is
    neither waited for (the stamp locked rows in scan order and crossed the claims) nor sent again in this pass;
    a later pass finds it claimed, or still waiting if the claim rolled back."""
    run = new_run(migrated)
    with migrated.session() as s:
        taken, waiting = (queries.add_attempt(s, s.get_one(Run, run), "p").id for _ in range(2))
        queries.mark_dispatched(s, [taken, waiting])
    with two_writers(migrated) as (worker, reconciler), Session(bind=worker) as w, Session(bind=reconciler) as r:
        assert claim(w, taken, AttemptStatus.QUEUED, AttemptStatus.RUNNING, Lease("w", uuid.uuid4().hex, 60))
        assert stamp(r) == [(waiting, AttemptStatus.QUEUED)]
        r.commit()
        w.commit()


def lock_row(s: Session, attempt_id: int) -> None:
    """Another writer of attempts' rows, writing them in the order of their ids."""
    s.execute(select(Attempt.id).where(Attempt.id == attempt_id).with_for_update())


def blocked_by(db: Database, waiter: int, holder: int) -> bool:
    """Whether the server process waiter waits for a lock the server process holder holds."""
    with db.engine.connect() as conn:
        query = text("SELECT CAST(:holder AS integer) = ANY(pg_blocking_pids(:waiter))")
        return bool(conn.execute(query, {"waiter": waiter, "holder": holder}).scalar())


def crossing_writer(db: Database, rows: tuple[int, int], write: Callable[[Session], object]) -> BaseException | None:
    """Runs write (given the later attempt first) while another writer holds the earlier attempt's row and then
    takes the later one's; returns what either side raised. Written in id order, write waits for the earlier row
    and the other goes on; written in the order given, the two deadlock (PostgreSQL fails one within a second)."""
    with two_writers(db) as (first, second):
        second.exec_driver_sql(WAITS)  # this side is meant to wait: a loaded machine may take a while to go on
        pids = tuple(conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in (first, second))
        for conn in (first, second):
            conn.commit()  # a session joins a transaction its connection has begun, and never commits it
        with Session(bind=first) as other, Session(bind=second) as tested:
            return _cross(db, (other, tested), pids, rows, write)


def _cross(
    db: Database,
    sessions: tuple[Session, Session],
    pids: tuple[int, int],
    rows: tuple[int, int],
    write: Callable[[Session], object],
) -> BaseException | None:
    (other, tested), (other_pid, tested_pid), (earlier, later) = sessions, pids, rows
    failed: list[BaseException] = []

    def run() -> None:
        try:
            write(tested)
            tested.commit()
        except BaseException as exc:  # reported to the test, not lost in the thread
            failed.append(exc)

    lock_row(other, earlier)
    writer = threading.Thread(target=run)
    writer.start()
    while writer.is_alive() and not blocked_by(db, tested_pid, other_pid):
        time.sleep(0.01)
    assert writer.is_alive(), "the writer never waited for the row the other writer holds"
    try:
        lock_row(other, later)
        other.commit()
    except BaseException as exc:
        failed.append(exc)
        other.rollback()
    writer.join()
    return failed[0] if failed else None


def test_a_group_of_agents_ends_given_in_any_order_locks_rows_in_id_order(migrated: Database) -> None:
    (x, x_lease), (y, y_lease) = running_attempts(migrated, 2)
    ends = [AgentEnd(i, lease, 1, {"agent_finished_at": utcnow()}, lease) for i, lease in ((y, y_lease), (x, x_lease))]
    assert crossing_writer(migrated, (x, y), lambda s: record_outcomes(s, ends)) is None
    with migrated.session() as s:
        assert {s.get_one(Attempt, i).status for i in (x, y)} == {AttemptStatus.VERIFY_QUEUED.value}


def test_live_transcripts_given_in_any_order_lock_rows_in_id_order(migrated: Database) -> None:
    (x, x_lease), (y, y_lease) = running_attempts(migrated, 2)
    outputs = [(y, y_lease, "later so far"), (x, x_lease, "earlier so far")]
    assert crossing_writer(migrated, (x, y), lambda s: store_live_transcripts(s, outputs)) is None
    with migrated.session() as s:
        assert [s.get_one(Attempt, i).transcript for i in (x, y)] == ["earlier so far", "later so far"]
