"""A network partition of a worker host: its lease expires, another worker takes the attempt over, and what the
cut-off worker writes once the cable is back is fenced off by the lease token."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.netns import Host, stop
from tests.chaos.team import REPO_URL, Team, team
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command

pytestmark = pytest.mark.chaos
LEASE_SECONDS = 6.0
AGENT_SECONDS = "10"
# The agent says which host it ran on, so the transcript that stands shows whose run it is.
AGENT = shlex.join(
    ["sh", "-c", 'echo "agent on $(uname -n)"; exec "$@"', "sh", *scripted_command("sleep", AGENT_SECONDS)]
)


def agents_running(host: Host) -> list[int]:
    """The scripted agents alive on host (processes in its network namespace)."""
    own = os.readlink(f"/proc/{host.holder.pid}/ns/net")
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "ns/net") == own and b"workers.agents.scripted" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone while we looked
    return found


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team(tmp_path_factory.mktemp("partition"), lease_seconds=LEASE_SECONDS) as made:
        yield made


def test_a_partitioned_worker_loses_its_attempt_and_its_late_writes_are_fenced_off(hosts: Team) -> None:
    hosts.fleet("laptop", "repo", "add", "calc", REPO_URL, "--test-cmd", SAMPLE_TEST_CMD)
    hosts.start_worker("worker-a", "--verbose")
    body = "tests/test_calc.py::test_add"
    [ticket] = hosts.json(
        "laptop", "submit", "--repo", "calc", "--title", "fix add", "--body", body, "--agent-cmd", AGENT
    )

    def attempt() -> dict[str, Any]:
        [run] = hosts.api("observer", f"/api/tickets/{ticket['id']}/runs")
        [only] = run["attempts"]
        return hosts.api("observer", f"/api/attempts/{only['id']}")  # type: ignore[no-any-return]

    hosts.wait("worker-a running the agent", lambda: "agent on worker-a" in attempt()["transcript"])
    worker_a = hosts.host("worker-a")
    hosts.net.cut(worker_a)
    cut = time.monotonic()
    hosts.start_worker("worker-b", "--verbose")
    hosts.wait("worker-b taking the attempt over", lambda: "agent on worker-b" in attempt()["transcript"])
    took_over = time.monotonic() - cut
    hosts.wait("worker-a's agent finishing, cut off", lambda: not agents_running(worker_a))
    hosts.net.heal(worker_a)  # its result now reaches the database, with a lease token that no longer holds
    log = hosts.tmp / "worker-a.log"
    hosts.wait("worker-a learning it lost the lease", lambda: "lease lost" in log.read_text())
    hosts.wait(
        "the ticket verified", lambda: hosts.json("observer", "show", str(ticket["id"]))["status"] == "needs_review"
    )
    hosts.wait("worker-a back", lambda: len(hosts.json("observer", "status")["workers"]) == 2)
    final = attempt()
    events = hosts.api("observer", f"/api/tickets/{ticket['id']}/events")
    hosts.stop_worker("worker-a")  # anything it still had to say is said by now
    hosts.stop_worker("worker-b")
    after = attempt()
    verdicts = [e for e in events if e["kind"] in ("verified", "error")]
    assert [v["message"] for v in verdicts] == ["attempt 1: passed"]  # one verdict (verified by either worker)
    assert "agent on worker-b" in final["transcript"] and "agent on worker-a" not in final["transcript"]
    assert final["status"] == "finished" and final["verdict"] == "passed"
    assert (final["recoveries"], final["agent_runs"]) == (1, 2)  # worker-a's run never reached the database
    assert after == final  # nothing landed late
    print(f"partition: worker-b took the attempt over {took_over:.1f} s after the cut (lease {LEASE_SECONDS:.0f} s)")


HOLD_A_LOCK = """
import sys, time
from sqlalchemy import text
from db.engine import Database

with Database(sys.argv[1]).session() as s:
    print("idle limit", s.execute(text("SHOW idle_in_transaction_session_timeout")).scalar(), flush=True)
    s.execute(text("SELECT id FROM repos FOR UPDATE"))
    print("locked", flush=True)
    time.sleep(600)
"""
# Fleet's own limit is 30 s; the test gives the locker a URL with a shorter one, which Fleet keeps.
SHORT_LIMIT = "?options=-c%20idle_in_transaction_session_timeout%3D4000"


def test_a_host_cut_off_inside_a_transaction_does_not_hold_its_row_locks(hosts: Team) -> None:
    """Its session ends on the server (idle_in_transaction_session_timeout), not hours later by TCP keepalive."""
    observer, worker_a = hosts.host("observer"), hosts.host("worker-a")
    default = observer.start(
        sys.executable, "-c", HOLD_A_LOCK, hosts.database_url, env=hosts.env(), log=hosts.tmp / "default.log"
    )
    hosts.wait("Fleet's own limit", lambda: "locked" in (hosts.tmp / "default.log").read_text())
    assert "idle limit 30s" in (hosts.tmp / "default.log").read_text()
    stop(default)
    log = hosts.tmp / "locker.log"
    worker_a.start(sys.executable, "-c", HOLD_A_LOCK, hosts.database_url + SHORT_LIMIT, env=hosts.env(), log=log)
    hosts.wait("the repository's row locked on worker-a", lambda: "locked" in log.read_text())
    assert "idle limit 4s" in log.read_text()
    hosts.net.cut(worker_a)
    cut = time.monotonic()
    try:
        hosts.fleet("observer", "repo", "update", "calc", "--max-concurrency", "3")  # waits for the row
    finally:
        hosts.net.heal(worker_a)
    waited = time.monotonic() - cut
    [repo] = hosts.json("observer", "repo", "list")
    assert repo["settings"]["max_concurrency"] == 3
    print(f"partition: a cut-off transaction's row lock held {waited:.1f} s (limit 4 s)")
