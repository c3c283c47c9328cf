"""Ctrl-C on `fleet up`: one line says what the stop does; a second Ctrl-C hands the running attempts back at once,
waiting with no verdict and no attempt spent, their tickets `queued` again, and the next `fleet up` runs them
without waiting for a lease."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from db.models import Attempt, Ticket, Verification, Worker
from tests.core.conftest import SCRIPTED, Fleet
from tests.core.test_recovery import wait_for

ADD = "tests/test_calc.py::test_add"
STOPPING = (
    "stopping: no new work; running attempts have 300s (FLEET_SHUTDOWN_GRACE_SECONDS) to finish, then go back in "
    "line; Ctrl-C again stops them now"
)


def _starts(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _sleeps_then_fixes(counter: Path, go: Path) -> str:
    """An agent command that appends a line to counter each time it starts: its first start sleeps two minutes,
    a later one fixes the bug once the file go exists."""
    sleep, fix = " ".join([*SCRIPTED, "sleep", "120"]), " ".join([*SCRIPTED, "fix-add"])
    later = f"until [ -e {go} ]; do sleep 0.1; done; exec {fix}"
    return f"sh -c 'echo start >> {counter}; if [ $(wc -l < {counter}) -gt 1 ]; then {later}; fi; exec {sleep}'"


def _status(fleet: Fleet, ticket_id: int) -> str:
    """The ticket's status as `fleet tickets` lists it."""
    [listed] = [t for t in fleet.json("tickets", "--json") if t["id"] == ticket_id]
    return str(listed["status"])


@contextmanager
def _up(fleet: Fleet, *args: str) -> Iterator[subprocess.Popen[str]]:
    up = fleet.popen("up", "--concurrency", "1", *args)
    try:
        yield up
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def _ctrl_c_twice(fleet: Fleet, up: subprocess.Popen[str]) -> str:
    """Ctrl-C, then Ctrl-C again once the first was taken (its line is in the worker log): what `fleet up` printed."""
    log = fleet.home / "logs" / "worker.log"
    seen = log.read_text().count("stopping: no new work")
    up.send_signal(signal.SIGINT)
    wait_for(lambda: log.read_text().count("stopping: no new work") > seen, timeout=60)
    up.send_signal(signal.SIGINT)
    out, _ = up.communicate(timeout=60)  # long before the agent's two minutes
    return out


@pytest.mark.slow  # two real `fleet up` processes and an agent start in each
def test_a_second_ctrl_c_hands_running_attempts_back_at_once_for_the_next_fleet_up(embedded: Fleet) -> None:
    # Leases far longer than the test: an attempt left `running` would not run again within it.
    embedded.env.update(FLEET_AGENT_SANDBOX="false", FLEET_SHUTDOWN_GRACE_SECONDS="300", FLEET_LEASE_SECONDS="600")
    embedded.sample_repo()
    counter, go = embedded.tmp / "starts", embedded.tmp / "go"
    agent = _sleeps_then_fixes(counter, go)
    [ticket] = embedded.submit("--repo", "calc", "--title", "add", "--agent-cmd", agent, "--target", ADD)
    with _up(embedded) as up:
        wait_for(lambda: _starts(counter) == 1, timeout=60)
        assert _status(embedded, ticket["id"]) == "running"
        printed = _ctrl_c_twice(embedded, up)
    assert STOPPING in printed.splitlines()
    assert printed.splitlines()[-1] == "1 attempt went back in line, no verdict: run `fleet up` to resume"
    with embedded.db().session() as s:
        [attempt] = s.query(Attempt).filter_by(ticket_id=ticket["id"]).all()  # the run spent no attempt
        assert (attempt.status, attempt.lease_token, attempt.number) == ("queued", None, 1)
        assert s.query(Verification).count() == 0
    assert "attempt 1 (id 1): queued" in embedded.run("show", str(ticket["id"])).stdout
    assert _status(embedded, ticket["id"]) == "queued"  # no agent works on it: `fleet tickets` says so
    assert embedded.json("status", "--json")["tickets"].get("running", 0) == 0
    with _up(embedded, "--until-idle") as up:
        wait_for(lambda: _starts(counter) == 2, timeout=60)
        assert _status(embedded, ticket["id"]) == "running"  # picked up again
        go.touch()
        up.communicate(timeout=120)
    assert up.returncode == 0
    assert _status(embedded, ticket["id"]) == "needs_review"


CELERY_SAYS = ("Traceback", "KeyboardInterrupt", "Warm shutdown", "Cold shutdown", "cold shutdown", "Hitting Ctrl+C")
STOPPED_EARLY = (
    "stopped before the worker started: no attempt ran; the waiting ones stay in line",
    "stopping: no attempt was running; the waiting ones stay in line",
)


def _worker_row(fleet: Fleet) -> bool:
    with fleet.db().session() as s:
        return s.query(Worker).count() > 0


@pytest.mark.slow  # a real `fleet up`, stopped as it starts
def test_a_ctrl_c_as_fleet_up_starts_stops_it_with_one_line_and_loses_nothing(embedded: Fleet) -> None:
    # A short grace period: an attempt claimed before the Ctrl-C would go back in line within the test.
    embedded.env.update(FLEET_AGENT_SANDBOX="false", FLEET_SHUTDOWN_GRACE_SECONDS="1", FLEET_LEASE_SECONDS="600")
    embedded.sample_repo()
    counter, go = embedded.tmp / "starts", embedded.tmp / "go"
    agent = _sleeps_then_fixes(counter, go)
    [ticket] = embedded.submit("--repo", "calc", "--title", "add", "--agent-cmd", agent, "--target", ADD)
    with _up(embedded) as up:
        wait_for(lambda: _worker_row(embedded), timeout=60)  # the worker is starting: Celery is not consuming yet
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 130, out
    assert not [said for said in CELERY_SAYS if said in out], out
    said = [line for line in out.splitlines() if line in STOPPED_EARLY or line.startswith("stopping")]
    assert len(said) == 1, out  # one line, said once
    with embedded.db().session() as s:
        [attempt] = s.query(Attempt).filter_by(ticket_id=ticket["id"]).all()
        assert (attempt.status, attempt.lease_token) == ("queued", None)  # nothing left `running`
        assert s.get_one(Ticket, ticket["id"]).status == "queued"
        assert [w.id for w in s.query(Worker).filter(Worker.stopped_at.is_(None))] == []  # its stop is recorded
