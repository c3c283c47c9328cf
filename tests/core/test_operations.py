"""Operating a fleet: who runs what, a schema newer than the code, gc's ages, SIGTERM's grace, --drain."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import text

from db import queries
from db.lifecycle import AttemptStatus
from db.migrate import HEAD
from db.models import Attempt, Event, Verification
from tests.core.conftest import Fleet, scripted
from tests.core.test_recovery import counting, wait_for


def _ticket(fleet: Fleet, agent_cmd: str) -> int:
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add", "--agent-cmd", agent_cmd
    )
    return int(ticket["id"])


def test_fleet_workers_lists_each_worker_with_what_it_runs(embedded: Fleet) -> None:
    ticket = _ticket(embedded, scripted("fix-add"))
    with embedded.db().session() as s:
        [attempt] = queries.open_attempts(s, ticket)
        queries.beat(s, "host-a:41:abc", hostname="host-a", pid=41, slots=4, busy=1, queues="fleet.agents")
        queries.beat(s, "host-b:42:def", hostname="host-b", pid=42, slots=2, busy=0, queues="fleet.verify")
        lease = queries.Lease(owner="host-a:41:abc", token="t", seconds=60)
        queries.claim(s, attempt.id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease)
    workers = {w["id"]: w["running"] for w in embedded.json("workers")}
    assert workers == {
        "host-a:41:abc": [{"attempt": attempt.id, "ticket": ticket, "number": 1, "status": "running"}],
        "host-b:42:def": [],
    }
    embedded.env["COLUMNS"] = "200"
    table = embedded.run("workers").stdout
    assert "host-a" in table and f"ticket {ticket} attempt 1 (running)" in table


def test_every_command_refuses_a_schema_newer_than_its_code_in_one_line(embedded: Fleet) -> None:
    embedded.run("tickets")  # creates the database at this code's revision
    with embedded.db().engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    refused = embedded.run("worker", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: the database schema is at revision 0999, newer than this Fleet's {HEAD}: upgrade Fleet on this host"
        " (rolling upgrades migrate the database first, then restart the workers with the new version)"
    ]


@pytest.mark.parametrize("age", ["30d", "30", "12h", "0"])
def test_gc_older_than_takes_days_or_hours(embedded: Fleet, age: str) -> None:
    lines = embedded.run("gc", "--older-than", age).stdout
    assert "stored attempt text: cleared 0 attempts" in lines


def test_gc_refuses_an_age_it_cannot_read(embedded: Fleet) -> None:
    refused = embedded.run("gc", "--older-than", "a month", check=False)
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "error: --older-than must be days (30 or 30d) or hours (12h), 0 or more (got 'a month')",
    )


@pytest.mark.slow
def test_sigterm_hands_a_running_attempt_back_after_the_grace_period(embedded: Fleet) -> None:
    embedded.env.update(FLEET_AGENT_SANDBOX="false", FLEET_SHUTDOWN_GRACE_SECONDS="1")
    started = embedded.tmp / "starts"
    ticket = _ticket(embedded, counting(started, "sleep", "120"))
    worker = embedded.popen("worker", "--concurrency", "1")
    try:
        wait_for(lambda: started.exists(), timeout=60)
        worker.send_signal(signal.SIGTERM)
        printed, _ = worker.communicate(timeout=60)  # long before the agent's two minutes
        assert worker.returncode == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert printed.splitlines()[-1] == "1 attempt went back in line, no verdict: the next free worker takes over"
    with embedded.db().session() as s:
        [attempt] = s.query(Attempt).filter_by(ticket_id=ticket).all()
        assert (attempt.status, attempt.lease_token, attempt.agent_runs) == ("queued", None, 1)
        assert s.query(Verification).count() == 0  # no verdict: the worker stopped, not the agent
        kinds = [e.kind for e in s.query(Event).filter_by(attempt_id=attempt.id)]
        assert "requeued" in kinds


@pytest.mark.slow
def test_worker_drain_works_until_nothing_is_left_then_exits(embedded: Fleet) -> None:
    ticket = _ticket(embedded, scripted("fix-add"))
    embedded.run("worker", "--drain", "--concurrency", "2", timeout=240)
    assert embedded.json("show", str(ticket))["status"] == "needs_review"


@pytest.mark.slow
def test_a_stopping_worker_finishes_its_agent_and_takes_no_next_attempt(embedded: Fleet) -> None:
    embedded.env.update(FLEET_AGENT_SANDBOX="false", FLEET_SHUTDOWN_GRACE_SECONDS="60")
    started = embedded.tmp / "starts"
    first = _ticket(embedded, counting(started, "sleep", "3"))
    [queued] = embedded.submit("--repo", "calc", "--title", "mul", "--agent-cmd", scripted("fix-add"))
    second = int(queued["id"])
    worker = embedded.popen("worker", "--concurrency", "1", "--queue", "agents")
    try:
        wait_for(lambda: started.exists(), timeout=60)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    with embedded.db().session() as s:
        statuses = {a.ticket_id: (a.status, a.agent_runs) for a in s.query(Attempt)}
    assert statuses == {first: ("verify_queued", 1), second: ("queued", 0)}  # the freed slot took nothing
