"""The control plane reaches the workers only through orchestrator.dispatch: a stub stands in for them here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from db import queries
from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSpec, TicketSpec
from orchestrator.dispatch import AgentRule, Dispatcher, LazyDispatcher
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from orchestrator.tickets import submit
from system.settings import Settings
from workers.agents.scripted import write_sample_repo  # test data only: the control plane never imports workers


class StubWorkers:
    """Workers that run only the agent called `only`, and count the scheduler passes they were asked for."""

    def __init__(self, only: str = "shell") -> None:
        self.only = only
        self.kicks = 0

    def kick(self, db: Database, settings: Settings) -> int:
        self.kicks += 1
        return 0

    def queue_depths(self) -> dict[str, int | None]:
        return {}

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return None if name == self.only else f"these workers run only {self.only!r}"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(database)
    write_sample_repo(tmp_path / "calc")
    register_repo(
        database, RepoSpec(name="calc", path=str(tmp_path / "calc"), test_cmd="true"), AgentRule(StubWorkers())
    )
    return database


def test_submit_stores_the_tickets_then_asks_the_workers_for_one_scheduler_pass(db: Database, tmp_path: Path) -> None:
    workers = StubWorkers()
    specs = [TicketSpec(repo="calc", title=f"ticket {n}") for n in range(3)]
    tickets = submit(db, workers, Settings(home=tmp_path / "home"), specs, tmp_path, "me")
    assert workers.kicks == 1
    with db.session() as s:
        assert [t.title for t in queries.list_tickets(s)] == ["ticket 2", "ticket 1", "ticket 0"]
    assert len(tickets) == 3


def test_an_agent_the_workers_refuse_stores_nothing_and_says_why(db: Database, tmp_path: Path) -> None:
    workers = StubWorkers(only="codex")
    with pytest.raises(FleetError, match="these workers run only 'codex'"):
        spec = TicketSpec(repo="calc", title="x", agents=["shell"])
        submit(db, workers, Settings(home=tmp_path / "home"), [spec], tmp_path, "me")
    assert workers.kicks == 0
    with db.session() as s:
        assert queries.list_tickets(s) == []


def test_the_dispatcher_is_built_on_first_use_only(tmp_path: Path) -> None:
    built: list[Settings] = []

    def factory(settings: Settings) -> Dispatcher:
        built.append(settings)
        return StubWorkers()

    lazy = LazyDispatcher(Settings(home=tmp_path), factory)
    assert built == []
    assert lazy.agent_problem("shell", ()) is None
    assert lazy.agent_problem("nobody", ()) is not None
    assert len(built) == 1
    assert lazy.queue_depths() == {} and len(built) == 1
