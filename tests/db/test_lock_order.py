"""Writers that share rows on PostgreSQL never wait for each other in crossed order: no deadlock stalls a worker.

The 400-slot benchmark (four worker processes) found about 180 deadlocks per 2,000 tickets, each a second of a
group of agents' ends waiting before PostgreSQL failed one side: the /metrics totals' rows, locked by attempt id
in each transaction's own order, and lease renewals crossing the rows an agent's end was moving on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.models import Attempt, Run, utcnow
from db.queries.leases import Lease, advance, claim, renew_leases, store_live_transcripts
from tests.db.test_metric_totals import new_run, totals

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SHARD = text("SELECT pg_backend_pid() % 64")  # the totals shard this connection writes (migration 0011)
NO_WAIT = "SET lock_timeout = '2s'"  # a wait turns into an error the test reports, instead of a stall


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
