"""Team mode: `fleet worker` processes, one per queue, scale agents and verification separately."""

from __future__ import annotations

import signal

from tests.core.conftest import Fleet, scripted
from tests.core.test_recovery import wait_for


def test_separate_agent_and_verify_workers_finish_tickets_together(team: Fleet) -> None:
    fleet = team
    fleet.sample_repo()
    agents = fleet.popen("worker", "--queue", "agents", "--concurrency", "3")
    verifiers = fleet.popen("worker", "--queue", "verify", "--concurrency", "2")
    try:
        tickets = [
            fleet.submit(
                "--repo",
                "calc",
                "--title",
                f"add {n}",
                "--body",
                "tests/test_calc.py::test_add",
                "--agent-cmd",
                scripted("fix-add"),
            )[0]
            for n in range(3)
        ]
        wait_for(lambda: {t["status"] for t in fleet.json("tickets")} == {"needs_review"}, timeout=120)
        workers = fleet.json("status")["workers"]
        assert sorted(w["queues"] for w in workers) == ["fleet.agents", "fleet.verify"]
    finally:
        for worker in (agents, verifiers):
            worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        for worker in (agents, verifiers):
            worker.wait(timeout=60)
    assert agents.returncode == 0 and verifiers.returncode == 0
    assert fleet.json("status")["workers"] == []  # both recorded their stop
    assert len(tickets) == 3
