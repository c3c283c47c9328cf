"""The attempt state machine on SQLite and PostgreSQL alike: claims, fencing, leases, the reconciler's queries."""

from __future__ import annotations

import threading
import time

import pytest

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.migrate import is_current, upgrade
from db.models import Run
from tests.db.test_metric_totals import new_run


def _ticket(db: Database) -> int:
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        ticket = queries.add_ticket(
            s,
            ["shell"],
            repo_id=repo.id,
            title="t",
            base_ref="HEAD",
            base_sha="0" * 40,
            agent="shell",
            attempt_budget=2,
        )
        return queries.add_attempt(s, ticket.runs[0], "prompt").id


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def lease(owner: str, seconds: float = 60.0) -> queries.Lease:
    return queries.Lease(owner=owner, token=f"{owner}-token", seconds=seconds)


def test_schema_upgrade_is_idempotent(db: Database) -> None:
    assert is_current(db)
    upgrade(db)
    assert is_current(db)


def test_only_one_of_many_concurrent_claims_wins(db: Database) -> None:
    attempt_id = _ticket(db)
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def claim(owner: str) -> None:
        barrier.wait()
        with db.session() as s:
            if queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease(owner)):
                wins.append(owner)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    with db.session() as s:
        attempt = queries.get_attempt(s, attempt_id)
        # An agent start is counted when the agent starts (queries.start_agents), not at the claim: a claim that
        # finds the agent's finished outcome goes on to verification without one.
        assert (attempt.status, attempt.lease_owner, attempt.agent_runs) == ("running", wins[0], 0)


def test_a_stale_holder_cannot_write_after_its_lease_was_taken_over(db: Database) -> None:
    attempt_id = _ticket(db)
    zombie, heir = lease("zombie", seconds=0.01), lease("heir")
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, zombie)
        assert queries.start_agents(s, [(attempt_id, zombie)]) == {attempt_id: 1}
    time.sleep(0.05)
    with db.session() as s:
        assert queries.expire_leases(s) == [(attempt_id, AttemptStatus.QUEUED)]
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, heir)
        assert queries.start_agents(s, [(attempt_id, heir)]) == {attempt_id: 2}
        assert queries.start_agents(s, [(attempt_id, zombie)]) == {}  # the lease was taken over: no start
    with db.session() as s:
        assert not queries.advance(s, attempt_id, zombie, AttemptStatus.VERIFY_QUEUED, diff="zombie's diff")
        assert queries.renew_leases(s, "zombie", [zombie.token], 60) == set()
        assert queries.advance(s, attempt_id, heir, AttemptStatus.VERIFY_QUEUED, diff="heir's diff")
    with db.session() as s:
        attempt = queries.get_attempt(s, attempt_id)
        assert (attempt.diff, attempt.recoveries, attempt.agent_runs) == ("heir's diff", 1, 2)


def test_renewed_leases_do_not_expire(db: Database) -> None:
    attempt_id = _ticket(db)
    short = lease("w", seconds=0.5)
    with db.session() as s:
        queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, short)
    with db.session() as s:
        assert queries.renew_leases(s, "w", [short.token], 60) == {short.token}
    time.sleep(0.6)
    with db.session() as s:
        assert queries.expire_leases(s) == []


def test_a_poll_reads_while_a_writer_holds_its_transaction(db: Database) -> None:
    # The idle check (five times a second), the progress line and the cancel relay read through Database.reading():
    # on SQLite it takes neither the write lock nor the process's turn, so it neither waits for a writer nor holds
    # one up, and it reads what was committed.
    attempt_id = _ticket(db)
    answered: list[tuple[int, set[int]]] = []

    def poll() -> None:
        with db.reading() as conn:
            answered.append((queries.count_open_attempts(conn), queries.cancel_requested(conn, [attempt_id])))

    with db.session() as s:
        queries.mark_dispatched(s, [attempt_id])  # the writer's transaction is open, and has written
        reader = threading.Thread(target=poll)
        reader.start()
        reader.join(timeout=5)
        assert answered == [(1, set())]


def test_undelivered_returns_sent_waiting_attempts_once_per_interval(db: Database) -> None:
    attempt_id = _ticket(db)
    with db.session() as s:
        assert queries.undelivered(s, 0.0) == []  # never sent: the scheduler's, not the reconciler's
        queries.mark_dispatched(s, [attempt_id])
    with db.session() as s:
        assert queries.undelivered(s, 0.0) == [(attempt_id, AttemptStatus.QUEUED)]
    with db.session() as s:
        assert queries.undelivered(s, 60.0) == []  # just re-sent: not again before the interval


def test_unclaimed_re_sends_the_oldest_sent_attempts_up_to_the_free_slots(db: Database) -> None:
    run = new_run(db)
    with db.session() as s:
        first, second, third = (queries.add_attempt(s, s.get_one(Run, run), "p").id for _ in range(3))
    for attempt_id in (second, first, third):  # sent in this order: second is the oldest
        with db.session() as s:
            queries.mark_dispatched(s, [attempt_id])
    with db.session() as s:
        assert queries.unclaimed(s, 0.0, 0) == []  # no slot free: a busy fleet's backlog is not re-sent
        assert set(queries.unclaimed(s, 0.0, 2)) == {(first, AttemptStatus.QUEUED), (second, AttemptStatus.QUEUED)}
    with db.session() as s:
        assert queries.unclaimed(s, 0.0, 1) == [(third, AttemptStatus.QUEUED)]  # the others' stamps are newer
        assert queries.unclaimed(s, 60.0, 3) == []


def test_baselines_are_stored_once_per_key(db: Database) -> None:
    _ticket(db)
    with db.session() as s:
        first = queries.save_baseline(s, 1, "a" * 40, "spec", {"x": 1})
    with db.session() as s:
        second = queries.save_baseline(s, 1, "a" * 40, "spec", {"x": 2})
    assert first.id == second.id
    with db.session() as s:
        assert queries.count_baselines(s, 1) == 1


def test_migrations_build_exactly_the_models_schema(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.models import Base

    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_the_head_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from db.migrate import HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config(Database("sqlite://"))).get_heads() == [HEAD]


def _attempts(db: Database, count: int) -> list[int]:
    """count tickets of one repository, each with its first attempt waiting."""
    with db.session() as s:
        repo = queries.add_repo(s, name="many", source="/nowhere", test_cmd="true")
        tickets = [
            queries.add_ticket(
                s, ["shell"], repo_id=repo.id, title=f"t{n}", base_ref="HEAD", base_sha="0" * 40, agent="shell"
            )
            for n in range(count)
        ]
        return [queries.add_attempt(s, ticket.runs[0], "prompt").id for ticket in tickets]


def test_attempts_claimed_together_each_hold_their_own_lease_and_count_their_own_start(db: Database) -> None:
    first, second, third = _attempts(db, 3)
    worker = [queries.Lease(owner="w", token=f"w-{n}", seconds=60.0) for n in range(3)]
    with db.session() as s:
        assert queries.claim(s, second, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease("other"))
    with db.session() as s:
        picks = list(zip((first, second, third), worker, strict=True))
        claimed = queries.claim_each(s, picks, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
        assert claimed == {first, third}  # another worker holds the second
        mine = [(first, worker[0]), (third, worker[2])]
        assert queries.start_agents(s, [*mine, (second, worker[1])]) == {first: 1, third: 1}
    with db.session() as s:
        held = {
            a: (x.status, x.lease_owner, x.lease_token, x.agent_runs)
            for a in (first, second, third)
            if (x := queries.get_attempt(s, a))
        }
    assert held == {
        first: ("running", "w", "w-0", 1),
        second: ("running", "other", "other-token", 0),
        third: ("running", "w", "w-2", 1),
    }
    with db.session() as s:
        assert queries.claim_each(s, picks, AttemptStatus.QUEUED, AttemptStatus.RUNNING) == set()  # none waits now
        assert queries.claim_each(s, [], AttemptStatus.QUEUED, AttemptStatus.RUNNING) == set()
        assert queries.start_agents(s, []) == {}


def test_leases_claimed_together_are_one_workers(db: Database) -> None:
    first, second = _attempts(db, 2)
    picks = [(first, lease("one")), (second, lease("two"))]
    with pytest.raises(ValueError, match="share their owner"), db.session() as s:
        queries.claim_each(s, picks, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
