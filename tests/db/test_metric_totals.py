"""/metrics' running totals (kept by migration 0009's triggers) against a full count of the rows they come from."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import ColumnElement, case, func, insert, select

from db import dashboard, queries
from db.dashboard import DURATION_BOUNDS, Histogram, Totals
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.migrate import HEAD, alembic_config, current_revision, upgrade
from db.models import Attempt, Run, Verification, utcnow
from db.queries.leases import Lease, claim, keep_agent_outcome, release
from tests.conftest import new_pg_database
from tests.db.test_housekeeping_queries import a_repo

# A value in every bucket, and past the last: the bounds themselves fall in their own bucket (`le`).
SECONDS = (0.5, 1.0, 3.0, 5.0, 12.0, 29.0, 45.0, 100.0, 250.0, 500.0, 1200.0, 3000.0, 5000.0)


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def _seconds(s: queries.Session, rounded: bool) -> ColumnElement[Any]:
    """An attempt's agent run time as the triggers count it: on SQLite to the millisecond since migration 0010
    (rounded), as a float of julianday() differences before."""
    if s.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Attempt.agent_finished_at - Attempt.started_at)
    seconds: ColumnElement[Any] = (
        func.julianday(Attempt.agent_finished_at) - func.julianday(Attempt.started_at)
    ) * 86400.0
    return func.round(seconds, 3) if rounded else seconds


def _histogram(s: queries.Session, value: ColumnElement[Any], *where: Any) -> Histogram:
    bucket = case(*((value <= bound, index) for index, bound in enumerate(DURATION_BOUNDS)), else_=len(DURATION_BOUNDS))
    per_bucket = [0] * (len(DURATION_BOUNDS) + 1)
    total = 0.0
    for index, count, subtotal in s.execute(
        select(bucket, func.count(), func.sum(value)).where(*where).group_by(bucket)
    ):
        per_bucket[int(index)] += int(count)
        total += float(subtotal or 0.0)
    return Histogram([sum(per_bucket[: n + 1]) for n in range(len(DURATION_BOUNDS))], total, sum(per_bucket))


def recount(db: Database, rounded: bool = True) -> Totals:
    """The full aggregation over every verification and attempt that /metrics ran on each scrape before 0009."""
    with db.session() as s:
        verdicts = dict(s.execute(select(Verification.verdict, func.count()).group_by(Verification.verdict)).all())
        finished = (Attempt.started_at.is_not(None), Attempt.agent_finished_at.is_not(None))
        return Totals(
            verdicts={verdict: int(count) for verdict, count in sorted(verdicts.items())},
            verification_seconds=_histogram(s, Verification.duration),
            agent_seconds=_histogram(s, _seconds(s, rounded), *finished),
            cost_usd=float(s.scalar(select(func.coalesce(func.sum(Attempt.cost_usd), 0.0))) or 0.0),
        )


def totals(db: Database) -> Totals:
    with db.session() as s:
        return dashboard.totals(s)


def assert_same(kept: Totals, counted: Totals) -> None:
    """Counts exactly; sums of floats up to the order they were added in."""
    assert kept.verdicts == counted.verdicts
    for ours, theirs in ((kept.verification_seconds, counted.verification_seconds),
                         (kept.agent_seconds, counted.agent_seconds)):  # fmt: skip
        assert (ours.at_most, ours.count) == (theirs.at_most, theirs.count)
        assert ours.total == pytest.approx(theirs.total)
    assert kept.cost_usd == pytest.approx(counted.cost_usd)


def new_run(db: Database) -> int:
    with db.session() as s:
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=a_repo(s).id, title="t", base_ref="HEAD", base_sha="a" * 40, agent="shell"
        )
        return ticket.runs[0].id


def finished_attempt(db: Database, run_id: int, seconds: float, cost: float) -> int:
    """An attempt taken by a worker whose agent ran `seconds` and cost `cost`, through the worker's own writes."""
    lease = Lease("w", uuid.uuid4().hex, 60)
    with db.session() as s:
        attempt = queries.add_attempt(s, s.get_one(Run, run_id), "prompt")
    with db.session() as s:
        assert claim(s, attempt.id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease)
    with db.session() as s:
        started = s.get_one(Attempt, attempt.id).started_at
        assert started is not None
        assert keep_agent_outcome(
            s, attempt.id, 0, agent_finished_at=started + timedelta(seconds=seconds), cost_usd=cost
        )
    return attempt.id


def test_totals_follow_every_writer_and_equal_a_full_count(db: Database) -> None:
    run = new_run(db)
    for n, seconds in enumerate(SECONDS):
        attempt = finished_attempt(db, run, seconds, cost=0.25 * n)
        with db.session() as s:
            queries.add_verification(s, attempt, verdict=["passed", "failed", "gamed"][n % 3], duration=SECONDS[-1 - n])
            if n % 4 == 0:  # the gateway's calls add to the attempt's spend as they are made
                queries.add_model_call(s, attempt, protocol="openai", status=200, cost_usd=0.125)
    with db.session() as s:  # rows written in bulk, finished already, as bench/scale.py builds its history
        ticket = s.get_one(Run, run).ticket_id
        started = utcnow()
        finished = [
            dict(number=100 + n, agent_finished_at=started + timedelta(seconds=v)) for n, v in enumerate(SECONDS)
        ]
        common = dict(run_id=run, ticket_id=ticket, status="finished", started_at=started, cost_usd=1.5)
        rows = [common | row for row in finished]
        s.execute(insert(Attempt), rows)
    kept = totals(db)
    assert_same(kept, recount(db))
    assert kept.verification_seconds.count == len(SECONDS) and kept.agent_seconds.count == 2 * len(SECONDS)
    assert kept.verification_seconds.at_most[1] == 4  # 0.5, 1.0, 3.0 and 5.0: a bound is in its own bucket
    assert kept.cost_usd == pytest.approx(0.25 * sum(range(len(SECONDS))) + 0.125 * 4 + 1.5 * len(SECONDS))


def test_an_attempt_taken_again_to_hand_its_outcome_over_keeps_its_run_time(db: Database) -> None:
    attempt = finished_attempt(db, new_run(db), 12.0, cost=0.0)
    with db.session() as s:
        lease_token = s.get_one(Attempt, attempt).lease_token
        assert lease_token and release(s, attempt, Lease("w", lease_token, 60)) == AttemptStatus.QUEUED
    with db.session() as s:
        assert claim(s, attempt, AttemptStatus.QUEUED, AttemptStatus.RUNNING, Lease("w2", "t2", 60))
    kept = totals(db)
    assert_same(kept, recount(db))
    assert kept.agent_seconds.at_most[:3] == [0, 0, 1] and kept.agent_seconds.total == pytest.approx(12.0, abs=0.01)


def test_deleted_rows_stay_counted(db: Database) -> None:
    """Prometheus counters never go backwards: removing a repository with its history takes nothing off."""
    attempt = finished_attempt(db, new_run(db), 3.0, cost=2.0)
    with db.session() as s:
        queries.add_verification(s, attempt, verdict="passed", duration=1.5)
    before = totals(db)
    with db.session() as s:
        queries.delete_repo(s, "r")
    assert totals(db) == before
    assert before.verdicts == {"passed": 1} and before.cost_usd == 2.0
    assert recount(db).verdicts == {} and recount(db).cost_usd == 0.0


def test_concurrent_writers_lose_nothing(db: Database) -> None:
    run = new_run(db)
    with db.session() as s:
        attempts = [queries.add_attempt(s, s.get_one(Run, run), "p").id for _ in range(80)]
    errors: list[BaseException] = []

    def write(mine: list[int]) -> None:
        try:
            for attempt in mine:
                with db.session() as s:
                    queries.add_verification(s, attempt, verdict="passed", duration=2.0)
                    queries.add_model_call(s, attempt, protocol="openai", status=200, cost_usd=0.5)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(attempts[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    kept = totals(db)
    assert_same(kept, recount(db))
    assert kept.verdicts == {"passed": 80} and kept.cost_usd == pytest.approx(40.0)


@pytest.fixture
def empty_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own, with no schema: for walking the migrations."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('migrate') / 'fleet.db'}"
        return
    with new_pg_database("fleet_migrate") as url:
        yield url


def test_the_migration_counts_the_history_already_there(empty_url: str) -> None:
    """0009 counts the history written before it. The history is written at the head (this code's models name
    columns added since 0008) and the schema walked down to 0008 and up again."""
    from alembic import command

    db = Database(empty_url)
    upgrade(db)
    run = new_run(db)
    for n, seconds in enumerate(SECONDS):
        attempt = finished_attempt(db, run, seconds, cost=0.5)
        with db.session() as s:
            queries.add_verification(s, attempt, verdict="passed" if n % 2 else "error", duration=seconds)
    command.downgrade(alembic_config(db), "0008")
    command.upgrade(alembic_config(db), "0009")
    assert_same(totals(db), recount(db, rounded=False))
    assert totals(db).agent_seconds.count == len(SECONDS)
    command.downgrade(alembic_config(db), "0008")  # the triggers go with the table: writing still works
    with db.engine.begin() as conn:  # an attempt and its verification written as rows of the schema of 0008
        for table, changed in (("attempts", "number = 1000"), ("verifications", "attempt_id = 1000")):
            conn.exec_driver_sql(f"CREATE TEMP TABLE copied_{table} AS SELECT * FROM {table} WHERE id = 1")
            conn.exec_driver_sql(f"UPDATE copied_{table} SET id = 1000, {changed}")
            conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM copied_{table}")
        conn.exec_driver_sql("UPDATE attempts SET cost_usd = cost_usd + 0.5 WHERE id = 1")
        conn.exec_driver_sql("DELETE FROM verifications WHERE id = 2")
    command.upgrade(alembic_config(db), "0009")
    assert_same(totals(db), recount(db, rounded=False))
    upgrade(db)
    assert current_revision(db) == HEAD
    db.dispose()


def test_an_agent_run_of_exactly_a_bounds_length_is_counted_in_that_bucket(db: Database) -> None:
    run = new_run(db)
    for _ in range(50):  # julianday() differences in days, times 86,400, came out above the bound for some starts
        finished_attempt(db, run, 5.0, cost=0.0)
    kept = totals(db).agent_seconds
    assert (kept.at_most[:3], kept.count) == ([0, 50, 50], 50)  # bounds 1, 5, 15
