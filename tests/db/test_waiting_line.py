"""The waiting line a scheduler pass reads: each repository's first waiting attempts, highest priority first, then
oldest. Attempts carry their ticket's repository and priority, copied by the database as each is written
(migration 0013's trigger), so the line is walked from an index however long the backlog
(tests/db/test_query_plans.py shows the plan)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import insert, select

from db import policy, queries
from db.engine import Database
from db.migrate import HEAD, alembic_config, current_revision, upgrade
from db.models import Attempt
from tests.conftest import new_pg_database


@pytest.fixture
def db(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A database of its own (the migration test walks its schema down and up)."""
    if database_url.startswith("sqlite"):
        database = Database(f"sqlite:///{tmp_path_factory.mktemp('line') / 'fleet.db'}")
        upgrade(database)
        yield database
        database.dispose()
        return
    with new_pg_database("fleet_line") as url:
        database = Database(url)
        upgrade(database)
        yield database
        database.dispose()


def _ticket(s: queries.Session, repo_id: int, title: str, priority: int = 0) -> int:
    """A ticket with its first attempt, written the way one ticket is (queries.add_attempt)."""
    ticket = queries.add_ticket(
        s, ["shell"], repo_id=repo_id, title=title, base_ref="HEAD", base_sha="0" * 40, agent="shell", priority=priority
    )
    return queries.add_attempt(s, ticket.runs[0], "prompt").id


def _batch(s: queries.Session, repo_id: int, priorities: list[int]) -> list[int]:
    """Tickets written the way a batch is (policy.open_tickets: many rows per INSERT); their attempts' ids."""
    new = [
        policy.NewTicket(
            dict(
                repo_id=repo_id,
                title=f"b{n}",
                body="",
                base_ref="HEAD",
                base_sha="0" * 40,
                priority=priority,
                agent="shell",
                attempt_budget=1,
                targets=[],
                submitted_by="test",
            ),  # fmt: skip
            ["shell"],
            "r",
        )
        for n, priority in enumerate(priorities)
    ]
    ids = policy.open_tickets(s, new)
    return [attempt.id for ticket_id in ids for attempt in queries.open_attempts(s, ticket_id)]


def line(db: Database, per_repo: int) -> dict[int, list[tuple[int, int]]]:
    """Each repository's line as the pass reads it: (attempt, priority), in the order the scheduler weighs them."""
    with db.session() as s:
        found = queries.pending(s, per_repo=per_repo)
    ordered = sorted(found, key=lambda p: (-p.priority, p.attempt_id))
    return {repo: [(p.attempt_id, p.priority) for p in ordered if p.repo_id == repo] for repo in {1, 2}}


@pytest.fixture
def backlog(db: Database) -> dict[str, int]:
    with db.session() as s:
        first = queries.add_repo(s, name="a", source="/nowhere", test_cmd="true").id
        second = queries.add_repo(s, name="b", source="/nowhere", test_cmd="true").id
        oldest = _ticket(s, first, "oldest")
        older = _ticket(s, first, "older")
        urgent = _ticket(s, first, "urgent", priority=5)
        b_first, b_second, b_urgent = _batch(s, second, [0, 0, 7])
        newest_most_urgent = _ticket(s, first, "newest", priority=9)
    return dict(
        oldest=oldest, older=older, urgent=urgent, newest_most_urgent=newest_most_urgent,
        b_first=b_first, b_second=b_second, b_urgent=b_urgent,
    )  # fmt: skip


def test_each_repository_sends_its_first_by_priority_then_age(db: Database, backlog: dict[str, int]) -> None:
    a = backlog
    assert line(db, per_repo=2) == {
        1: [(a["newest_most_urgent"], 9), (a["urgent"], 5)],
        2: [(a["b_urgent"], 7), (a["b_first"], 0)],
    }
    assert line(db, per_repo=4)[1] == [
        (a["newest_most_urgent"], 9),
        (a["urgent"], 5),
        (a["oldest"], 0),
        (a["older"], 0),
    ]


def test_every_attempt_carries_its_tickets_repository_and_priority(db: Database, backlog: dict[str, int]) -> None:
    """Both ways of making an attempt get them from the database (one left at the defaults would never be sent)."""
    with db.engine.connect() as conn:
        copies = conn.exec_driver_sql(
            "SELECT attempts.repo_id = tickets.repo_id AND attempts.precedence = -tickets.priority"
            " FROM attempts JOIN tickets ON tickets.id = attempts.ticket_id"
        ).scalars()
        assert [bool(copied) for copied in copies] == [True] * len(backlog)


def test_an_attempt_written_without_its_place_takes_its_tickets(db: Database, backlog: dict[str, int]) -> None:
    """Whoever writes an attempt, and whatever it says of these columns, the database copies its ticket's."""
    with db.session() as s:
        queries.mark_dispatched(s, [backlog["newest_most_urgent"]])
        urgent = s.get_one(Attempt, backlog["newest_most_urgent"])
        s.execute(insert(Attempt), [dict(run_id=urgent.run_id, ticket_id=urgent.ticket_id, number=2, prompt="p")])
        s.execute(insert(Attempt), [dict(run_id=urgent.run_id, ticket_id=urgent.ticket_id, number=3, prompt="p",
                                         repo_id=2, precedence=5)])  # fmt: skip
        second, third = s.scalars(select(Attempt.id).where(Attempt.number > 1).order_by(Attempt.number)).all()
    assert line(db, per_repo=2)[1] == [(second, 9), (third, 9)]


def test_a_sent_attempt_leaves_the_line(db: Database, backlog: dict[str, int]) -> None:
    with db.session() as s:
        queries.mark_dispatched(s, [backlog["newest_most_urgent"], backlog["b_urgent"]])
    assert line(db, per_repo=2) == {
        1: [(backlog["urgent"], 5), (backlog["oldest"], 0)],
        2: [(backlog["b_first"], 0), (backlog["b_second"], 0)],
    }


def test_a_next_attempt_keeps_its_tickets_place(db: Database, backlog: dict[str, int]) -> None:
    """A run's next attempt (after a failed verdict) waits with its ticket's priority, in its ticket's repository."""
    with db.session() as s:
        queries.mark_dispatched(s, [backlog["newest_most_urgent"]])
        run = queries.get_run(s, s.get_one(Attempt, backlog["newest_most_urgent"]).run_id)  # priority 9
        again = queries.add_attempt(s, run, "prompt, with the failures")
        assert (again.repo_id, again.precedence) == (1, -9)  # as the database wrote them
    assert line(db, per_repo=1)[1] == [(again.id, 9)]


def test_the_migration_gives_the_attempts_already_there_their_tickets_place(
    db: Database, backlog: dict[str, int]
) -> None:
    """0013 copies each ticket's repository and priority onto the attempts written before it."""
    before = line(db, per_repo=4)
    command.downgrade(alembic_config(db), "0012")
    command.upgrade(alembic_config(db), "0013")
    assert current_revision(db) == "0013"
    command.upgrade(alembic_config(db), "head")
    assert current_revision(db) == HEAD
    assert line(db, per_repo=4) == before
