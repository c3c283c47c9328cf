"""A provider (tests/gateway/upstream.py), a database with one attempt, and that attempt's gate on the gateway."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus, move
from db.migrate import upgrade
from db.models import BudgetHold
from tests.gateway.upstream import GOOD_KEY, Upstream, model_upstream
from workers.gateway.attempt import AttemptMeter
from workers.gateway.prices import DEFAULT_PRICES, Price
from workers.gateway.protocols import Upstream as Route
from workers.gateway.server import GatewayGate, ModelGateway


@dataclass
class Attempt:
    db: Database
    ticket_id: int
    attempt_id: int
    gate: GatewayGate | None = None

    def written(self) -> Database:
        """The database once every call that has ended is in it."""
        if self.gate is not None:
            self.gate.flush()
        return self.db


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with model_upstream() as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway() -> Iterator[ModelGateway]:
    gateway = ModelGateway()
    yield gateway
    gateway.close()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(database)
    return database


def new_attempt(db: Database, budget_usd: float = 0.0) -> Attempt:
    return new_attempts(db, budget_usd)[0]


def new_attempts(db: Database, budget_usd: float = 0.0, runs: int = 1) -> list[Attempt]:
    """A ticket sent to `runs` agents (a fan-out), each run's first attempt running, as a worker's claim leaves it
    while its agent makes calls."""
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/x", test_cmd="t")
        ticket = queries.add_ticket(
            s,
            ["shell"] * runs,
            repo_id=repo.id,
            title="t",
            base_ref="HEAD",
            base_sha="a" * 40,
            agent="shell",
            attempt_budget=1,
        )
        ticket.budget_usd = budget_usd
        attempts = [queries.add_attempt(s, run, "the prompt") for run in ticket.runs]
        for attempt in attempts:
            move(attempt, AttemptStatus.RUNNING)
        return [Attempt(db, ticket.id, attempt.id) for attempt in attempts]


def held(gate: GatewayGate) -> float:
    """What the gate's attempt holds against its ticket's budget, once every call that has ended is written."""
    gate.flush()
    meter = gate.meter
    assert isinstance(meter, AttemptMeter)
    return attempt_holds(meter.db, meter.attempt_id)


def attempt_holds(db: Database, attempt_id: int) -> float:
    """What every gate of the attempt holds, as the budget's check reads it while the attempt runs."""
    with db.session() as s:
        return float(
            s.scalar(
                select(func.coalesce(func.sum(BudgetHold.held_usd), 0.0)).where(BudgetHold.attempt_id == attempt_id)
            )
        )


def routes(provider: Upstream, key: str = GOOD_KEY) -> dict[str, Route]:
    """Every family to the test provider, as the worker would set them from its environment."""
    return {
        "openai": Route(provider.url + "/v1", key, "OPENAI_API_KEY"),
        "anthropic": Route(provider.url, key, "ANTHROPIC_API_KEY"),
        "gemini": Route(provider.url, key, "GEMINI_API_KEY"),
    }


def open_gate(
    gateway: ModelGateway,
    provider: Upstream,
    attempt: Attempt,
    *,
    key: str = GOOD_KEY,
    budget_usd: float = 0.0,
    prices: dict[str, Price] | None = None,
    worker: str = "",
) -> GatewayGate:
    table = DEFAULT_PRICES if prices is None else prices
    meter = AttemptMeter(attempt.db, attempt.attempt_id, attempt.ticket_id, budget_usd, table, worker)
    attempt.gate = gateway.open(routes(provider, key), meter)
    return attempt.gate


@pytest.fixture
def attempt(db: Database) -> Attempt:
    return new_attempt(db)


@pytest.fixture
def gate(gateway: ModelGateway, upstream: Upstream, attempt: Attempt) -> Iterator[GatewayGate]:
    upstream.seen.clear()
    with open_gate(gateway, upstream, attempt) as opened:
        yield opened


@pytest.fixture
def agent(gate: GatewayGate) -> Iterator[httpx.Client]:
    """The agent's HTTP client: it knows the gate's URL and the placeholder key, nothing else."""
    with httpx.Client(base_url=gate.url, trust_env=False, timeout=30) as client:
        yield client


def gate_key(gate: GatewayGate) -> dict[str, str]:
    """The headers of a call through gate: its placeholder key, as a bearer token, and a JSON body."""
    return {"Authorization": f"Bearer {gate.key}", "Content-Type": "application/json"}


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}
SLOW = CHAT | {"model": "slow-usage", "stream": True}  # the text at once, its usage seconds later: a call in flight
PRICES = DEFAULT_PRICES | {"slow-usage": Price(2.50, 10.00)}


@contextmanager
def in_flight(agent: httpx.Client, gate: GatewayGate, body: dict[str, Any] = SLOW) -> Iterator[None]:
    """A slow stream, its first chunk read: the call is under way until the block ends."""
    with agent.stream("POST", "/openai/chat/completions", json=body, headers=gate_key(gate)) as answer:
        assert answer.status_code == 200
        reading = answer.iter_raw()  # kept: an iterator dropped closes the response, and the agent hangs up
        next(reading)
        yield


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most a minute) until condition holds; what says what never happened."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
