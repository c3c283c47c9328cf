"""A batch submit writes its tickets in a few INSERTs of many rows, on SQLite and PostgreSQL, and all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from db import policy, queries
from db.engine import Database
from db.migrate import upgrade
from db.models import Attempt, Event, Run, Ticket
from db.specs import RepoSpec, TicketSpec
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from orchestrator.tickets import submit
from system.settings import Settings
from tests.orchestrator.test_dispatch import StubWorkers
from workers.agents.scripted import write_sample_repo  # test data only


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Database:
    database = Database(database_url)
    upgrade(database)
    write_sample_repo(tmp_path / "calc")
    register_repo(
        database, RepoSpec(name="calc", path=str(tmp_path / "calc"), test_cmd="true"), AgentRule(StubWorkers())
    )
    return database


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The first word of every statement sent to the database."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def specs(count: int) -> list[TicketSpec]:
    """Tickets of one repository and base, every third with two runs, every fifth naming a test in its body."""
    return [
        TicketSpec(
            repo="calc",
            title=f"ticket {n}",
            body="tests/test_calc.py::test_add fails" if n % 5 == 0 else "b",
            agent_cmd="true",
            fanout=2 if n % 3 == 0 else 1,
        )
        for n in range(count)
    ]


def test_a_batch_costs_the_same_statements_at_ten_tickets_as_at_six_hundred(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    counts = []
    for size in (10, 600):
        with statements(db) as seen:
            done = submit(db, StubWorkers(), settings, specs(size), tmp_path, "alice", check_commands=True)
        assert [t.title for t in done] == [f"ticket {n}" for n in range(size)]
        counts.append(seen)
    assert counts[0] == counts[1] and counts[1].count("INSERT") == 4, counts  # tickets, runs, attempts, events
    assert len(counts[1]) <= 8, counts[1]  # and the repository's row, once


def test_every_ticket_gets_its_runs_first_attempts_and_event(db: Database, tmp_path: Path) -> None:
    done = submit(db, StubWorkers(), Settings(home=tmp_path / "home"), specs(30), tmp_path, "alice")
    with db.session() as s:
        for n, submitted in enumerate(done):
            ticket = queries.load_ticket_tree(s, submitted.id)
            assert (ticket.title, ticket.submitted_by, ticket.status) == (f"ticket {n}", "alice", "queued")
            assert ticket.targets == (["tests/test_calc.py::test_add"] if n % 5 == 0 else [])
            assert ticket.agent_options == {"command": ["true"]}
            assert [(run.index, run.agent, run.attempt_limit) for run in ticket.runs] == [
                (index, "shell", 3) for index in range(2 if n % 3 == 0 else 1)
            ]
            for run in ticket.runs:
                [attempt] = run.attempts
                assert (attempt.number, attempt.status, attempt.ticket_id) == (1, "queued", ticket.id)
                assert attempt.prompt == policy.compose_prompt(ticket) and f"# Ticket {ticket.id}: " in attempt.prompt
            [submitted_event] = queries.ticket_events(s, ticket.id)
            assert (submitted_event.kind, submitted_event.message, submitted_event.actor) == (
                "submitted",
                ticket.title,
                "alice",
            )


def test_one_bad_ticket_at_the_end_of_a_big_batch_stores_none(db: Database, tmp_path: Path) -> None:
    batch = specs(1000)
    batch[998] = TicketSpec(repo="calc", title="bad", base="no-such-ref", agent_cmd="true")
    workers = StubWorkers()
    with pytest.raises(FleetError, match=r"^ticket 999 of 1000: base ref 'no-such-ref' does not exist in repo 'calc'"):
        submit(db, workers, Settings(home=tmp_path / "home"), batch, tmp_path, "alice")
    assert workers.kicks == 0
    with db.session() as s:
        assert [s.scalar(select(func.count()).select_from(m)) for m in (Ticket, Run, Attempt, Event)] == [0, 0, 0, 0]
