"""Team mode: `fleet worker` processes, one per queue, scale agents and verification separately."""

from __future__ import annotations

import signal
from typing import Any

from db.models import Event
from tests.core.conftest import Fleet, scripted
from tests.core.test_recovery import wait_for


def _fix_add(fleet: Fleet, title: str) -> dict[str, Any]:
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", title, "--body", "tests/test_calc.py::test_add", "--agent-cmd", scripted("fix-add")
    )
    return ticket


def test_separate_agent_and_verify_workers_finish_tickets_together(team: Fleet) -> None:
    fleet = team
    fleet.sample_repo()
    agents = fleet.popen("worker", "--queue", "agents", "--concurrency", "3")
    verifiers = fleet.popen("worker", "--queue", "verify", "--concurrency", "2")
    try:
        tickets = [_fix_add(fleet, f"add {n}") for n in range(3)]
        wait_for(lambda: {t["status"] for t in fleet.json("tickets")} == {"needs_review"}, timeout=120)
        workers = fleet.json("status")["workers"]
        assert sorted(w["queues"] for w in workers) == ["fleet.agents", "fleet.verify"]
        verifier_id = next(w["id"] for w in workers if w["queues"] == "fleet.verify")
    finally:
        for worker in (agents, verifiers):
            worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        for worker in (agents, verifiers):
            worker.wait(timeout=60)
    assert agents.returncode == 0 and verifiers.returncode == 0
    assert fleet.json("status")["workers"] == []  # both recorded their stop
    assert len(tickets) == 3
    with fleet.db().session() as s:  # an agents-only worker sends each diff to the verify queue
        assert [e.actor for e in s.query(Event).filter_by(kind="verified")] == [verifier_id] * 3


def test_a_worker_that_verifies_takes_its_own_agents_diffs_and_an_idle_verifier_none(team: Fleet) -> None:
    fleet = team
    fleet.sample_repo()
    both = fleet.popen("worker", "--concurrency", "3")  # agents and verification
    wait_for(lambda: len(fleet.json("status")["workers"]) == 1, timeout=60)
    verifier = fleet.popen("worker", "--queue", "verify", "--concurrency", "2")
    try:
        wait_for(lambda: len(fleet.json("status")["workers"]) == 2, timeout=60)
        ids = {w["queues"]: w["id"] for w in fleet.json("status")["workers"]}
        for n in range(4):
            _fix_add(fleet, f"add {n}")
        wait_for(lambda: {t["status"] for t in fleet.json("tickets")} == {"needs_review"}, timeout=180)
    finally:
        for worker in (both, verifier):
            worker.send_signal(signal.SIGTERM)
        for worker in (both, verifier):
            worker.wait(timeout=60)
    with fleet.db().session() as s:
        actors = [e.actor for e in s.query(Event).filter_by(kind="verified")]
    # No message to the verify queue, where the idle verify-only worker would have taken some of them.
    assert actors == [ids["fleet.agents,fleet.verify"]] * 4
