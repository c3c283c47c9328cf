"""Nothing is lost and nothing runs twice: duplicate deliveries, a worker killed with -9, many tickets at once."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from db import queries
from db.lifecycle import AttemptStatus
from db.models import Attempt, Verification
from system.settings import Settings
from tests.core.conftest import SCRIPTED, Fleet, scripted
from workers.celery_app import create_app
from workers.queue import Dispatcher


def counting(counter: Path, script: str, *args: str) -> str:
    """An agent command that appends a line to counter each time it starts, then runs a scripted agent."""
    inner = " ".join([*SCRIPTED, script, *args])
    return f"sh -c 'echo start >> {counter}; exec {inner}'"


def dispatcher_for(fleet: Fleet) -> Dispatcher:
    broker = fleet.env.get("FLEET_BROKER_URL", "embedded")
    settings = Settings(home=fleet.home, database_url=fleet.database_url, broker_url=broker)
    return Dispatcher(create_app(settings))


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_the_same_attempt_delivered_three_times_runs_once(both_modes: Fleet) -> None:
    fleet = both_modes
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the test watches the agent through a file outside its worktree
    fleet.sample_repo()
    counter = fleet.tmp / "starts"
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        counting(counter, "fix-add"),
    )
    with fleet.db().session() as s:
        [attempt] = queries.open_attempts(s, ticket["id"])
    dispatcher_for(fleet).send([(attempt.id, AttemptStatus.QUEUED)] * 2)  # two more copies of the message
    fleet.up(concurrency=4)
    assert counter.read_text().splitlines() == ["start"]
    with fleet.db().session() as s:
        done = queries.get_attempt(s, attempt.id)
        assert (done.agent_runs, done.status) == (1, "finished")
        assert s.query(Verification).filter_by(attempt_id=attempt.id).count() == 1
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review"


def test_a_worker_killed_mid_attempt_is_recovered_and_the_ticket_ends_once(both_modes: Fleet) -> None:
    fleet = both_modes
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the test watches the agent through a file outside its worktree
    fleet.env["FLEET_LEASE_SECONDS"] = "3"  # so the dead worker's lease runs out quickly
    fleet.sample_repo()
    counter = fleet.tmp / "starts"
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        counting(counter, "sleep", "3"),
    )
    first = fleet.popen("up", "--concurrency", "2")
    wait_for(lambda: counter.exists())
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    fleet.up(concurrency=2)
    assert counter.read_text().splitlines() == ["start", "start"]  # killed once, run again once
    with fleet.db().session() as s:
        attempts = s.query(Attempt).filter_by(ticket_id=ticket["id"]).all()
        assert [(a.number, a.agent_runs, a.recoveries, a.status) for a in attempts] == [(1, 2, 1, "finished")]
        assert s.query(Verification).filter_by(attempt_id=attempts[0].id).count() == 1
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review"


def test_twenty_tickets_at_concurrency_eight_all_reach_the_right_state(both_modes: Fleet) -> None:
    fleet = both_modes
    fleet.sample_repo()
    plan = {
        "fix-add": "tests/test_calc.py::test_add",
        "fix-div": "tests/test_calc.py::test_div",
        "never": "tests/test_calc.py::test_div",
    }
    scripts = ["fix-add", "fix-div", "never", "fix-add", "fix-div"] * 4
    batch = [
        {"title": f"ticket {n}", "body": plan[script], "agent_cmd": scripted(script)}
        for n, script in enumerate(scripts)
    ]
    (fleet.tmp / "batch.json").write_text(json.dumps(batch))
    submitted = fleet.submit("--repo", "calc", "--attempts", "1", "--file", "batch.json")
    ids = {t["id"]: script for t, script in zip(submitted, scripts, strict=True)}
    fleet.up(concurrency=8)
    expected = {tid: "failed" if script == "never" else "needs_review" for tid, script in ids.items()}
    ended = fleet.json("tickets")
    assert len(ended) == len(expected)
    assert {t["id"]: (t["status"], t["reason"]) for t in ended if t["status"] != expected[t["id"]]} == {}
    with fleet.db().session() as s:
        assert queries.count_baselines(s, 1) == 1  # one suite run at the base for all twenty
        assert all(a.agent_runs == 1 for a in s.query(Attempt).all())
