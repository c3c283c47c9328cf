"""The database away: backends terminated again and again (pg_terminate_backend), and a PostgreSQL restart."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.harness import (
    agents_at_work,
    no_tracebacks,
    settle_and_check,
    submit,
    time_to_recover,
    wait_until,
)

pytestmark = pytest.mark.chaos


def test_backends_terminated_repeatedly(chaos: Chaos) -> None:
    chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 2)
    wait_until(lambda: agents_at_work(chaos.fleet) >= 3, 90, "agents at work")
    terminated, until = 0, time.monotonic() + 12  # agents finish and verifications run meanwhile
    while time.monotonic() < until:
        terminated += chaos.postgres.terminate_backends(chaos.database)
        time.sleep(0.2)
    assert terminated > 0
    recover = time_to_recover(chaos.fleet, set())
    settle_and_check(chaos.fleet, f"PostgreSQL: {terminated} backends terminated over 12 s", tickets, recover)
    assert no_tracebacks(chaos.logs()) == []


def test_postgresql_restart(chaos: Chaos) -> None:
    chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 3)
    wait_until(lambda: agents_at_work(chaos.fleet) >= 3, 90, "agents at work")
    chaos.postgres.stop()
    time.sleep(5)  # the agents finish while the database is away: their outcomes wait in the journal
    chaos.postgres.start()
    recover = time_to_recover(chaos.fleet, set())
    settle_and_check(chaos.fleet, "PostgreSQL restart (down 5 s)", tickets, recover)
    assert no_tracebacks(chaos.logs()) == []


def test_postgresql_away_longer_than_a_result_write_retries(chaos: Chaos) -> None:
    """The agents' outcomes outlive their writes: kept in the outcome journal, they reach verification unrepeated."""
    chaos.fleet.env["FLEET_WRITE_RETRY_SECONDS"] = "1"
    chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 2)
    wait_until(lambda: agents_at_work(chaos.fleet) >= 3, 90, "agents at work")
    chaos.postgres.stop()
    time.sleep(8)  # every finished agent's write gives up meanwhile: the attempt's lease lapses
    chaos.postgres.start()
    recover = time_to_recover(chaos.fleet, set())
    settle_and_check(chaos.fleet, "PostgreSQL down 8 s, result writes give up after 1 s", tickets, recover)
    assert no_tracebacks(chaos.logs()) == []
    assert "its outcome goes to verification" in chaos.log_text()  # taken from the journal, not run again
