"""kill -9 of a team worker mid-agent and mid-verification: its attempts are taken over once its lease expires."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.harness import (
    agents_at_work,
    agents_in_hand,
    in_status,
    settle_and_check,
    submit,
    time_to_recover,
    wait_until,
)
from workers.agents.scripted import SAMPLE_TEST_CMD

pytestmark = pytest.mark.chaos


def test_kill_9_of_a_worker_mid_agent(chaos: Chaos) -> None:
    a = chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 4)
    ids = chaos.worker_ids(a)
    wait_until(lambda: agents_at_work(chaos.fleet, ids) >= 1, 90, "a's agents at work")
    dead = chaos.kill("a")
    recover = time_to_recover(chaos.fleet, dead)
    settle_and_check(chaos.fleet, "kill -9 of a worker mid-agent", tickets, recover)


def test_kill_9_of_a_worker_mid_verification(chaos: Chaos) -> None:
    chaos.fleet.run("repo", "update", "calc", "--test-cmd", "sleep 3; " + SAMPLE_TEST_CMD)
    a = chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 1)
    ids = chaos.worker_ids(a)

    def verifying_only() -> bool:
        """a verifies, and none of its agents is at work or finished without its outcome recorded."""
        verifying = any(owner in ids for _, owner in in_status(chaos.fleet, ("verifying",)))
        return verifying and agents_in_hand(chaos.fleet, ids) == 0

    wait_until(verifying_only, 90, "a verifying, its agents' outcomes recorded")
    dead = chaos.kill("a")
    recover = time_to_recover(chaos.fleet, dead)
    settle_and_check(chaos.fleet, "kill -9 of a worker mid-verification", tickets, recover)


def test_kill_9_of_fleet_up(chaos: Chaos) -> None:
    chaos.start("up", "up", "--concurrency", "6")
    tickets = submit(chaos.fleet, 6, 4)
    wait_until(lambda: agents_at_work(chaos.fleet) >= 3, 90, "agents at work")
    dead = chaos.kill("up")
    chaos.start("up2", "up", "--concurrency", "6")
    recover = time_to_recover(chaos.fleet, dead)
    settle_and_check(chaos.fleet, "kill -9 of fleet up", tickets, recover)
