"""The broker lost: Redis restarted with no persistence, and Redis away for a while. Recovery takes seconds."""

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


def _broker_away(chaos: Chaos, seconds: float, fault: str) -> None:
    chaos.worker("a")
    chaos.worker("b")
    tickets = submit(chaos.fleet, 6, 2)
    wait_until(lambda: agents_at_work(chaos.fleet) >= 3, 90, "agents at work")
    chaos.redis.stop()
    time.sleep(seconds)  # agents finish meanwhile: their verifications cannot be sent
    chaos.redis.start()  # empty: every message it held is gone
    recover = time_to_recover(chaos.fleet, set())
    settle_and_check(chaos.fleet, fault, tickets, recover)
    assert no_tracebacks(chaos.logs()) == []


def test_redis_restarted_with_no_persistence(chaos: Chaos) -> None:
    _broker_away(chaos, 1, "Redis restart, no persistence")


def test_redis_down_for_a_while(chaos: Chaos) -> None:
    _broker_away(chaos, 30, "Redis down 30 s")
