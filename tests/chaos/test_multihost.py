"""Team mode across hosts that share no files: tickets from a laptop run on two workers; everything a reviewer
reads comes from the database, from a host that ran nothing; approval pushes to the repository's URL."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.team import REPO_URL, Team, team
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command

pytestmark = pytest.mark.chaos
TICKETS = 4  # one per slot: two workers of two slots each


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team(tmp_path_factory.mktemp("hosts")) as made:
        yield made


def test_the_servers_want_passwords_and_the_broker_speaks_only_tls(hosts: Team) -> None:
    laptop = hosts.host("laptop")
    db = hosts.host("db")
    wrong = dict(os.environ, PGPASSWORD="not-the-password", PGCONNECT_TIMEOUT="10")
    refused = laptop.run("psql", "-h", db.address, "-U", "fleet", "-d", "fleet", "-c", "select 1", env=wrong)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    broker = hosts.host("broker").address
    anonymous = laptop.run("redis-cli", "--tls", "--cacert", "/tmp/fleet-ca.pem", "-h", broker, "ping")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    plain = laptop.run("redis-cli", "-h", broker, "-a", "x", "--no-auth-warning", "ping", timeout=30)
    assert "PONG" not in plain.stdout


def test_tickets_from_a_laptop_run_on_both_workers_and_every_host_reads_them(hosts: Team) -> None:
    added = hosts.json("laptop", "repo", "add", "calc", REPO_URL, "--test-cmd", SAMPLE_TEST_CMD, "--deliver", "push")
    assert added["source"] == REPO_URL  # by URL: the repository exists only on the git host
    hosts.start_worker("worker-a")
    hosts.start_worker("worker-b")
    hosts.wait("two workers", lambda: len(hosts.json("observer", "status")["workers"]) == 2)
    agent = shlex.join(["sh", "-c", 'echo "agent on $(uname -n)"; exec "$@"', "sh", *scripted_command("sleep", "3")])
    body = "tests/test_calc.py::test_add"
    batch = [{"repo": "calc", "title": f"fix add {n}", "body": body, "agent_cmd": agent} for n in range(TICKETS)]
    hosts.host("laptop").write("/tmp/tickets.json", json.dumps(batch))  # one batch: every slot filled at once
    hosts.fleet("laptop", "submit", "--file", "/tmp/tickets.json")

    def all_reviewable() -> bool:
        return {t["status"] for t in hosts.json("laptop", "tickets")} == {"needs_review"}

    hosts.wait("every ticket verified", all_reviewable)
    tickets = hosts.json("observer", "tickets")
    assert len(tickets) == TICKETS
    agent_hosts = set()
    for ticket in tickets:  # read on the observer, which ran nothing, through the web host's API
        events = hosts.api("observer", f"/api/tickets/{ticket['id']}/events")
        verdicts = [e for e in events if e["kind"] in ("verified", "error")]
        assert [v["message"] for v in verdicts] == ["attempt 1: passed"], events  # one verdict per attempt
        assert verdicts[0]["actor"].split(":")[0] in ("worker-a", "worker-b")  # the worker that wrote it
        [run] = hosts.api("observer", f"/api/tickets/{ticket['id']}/runs")
        [attempt] = run["attempts"]
        shown = hosts.api("observer", f"/api/attempts/{attempt['id']}")
        assert "+    return a + b" in shown["diff"], shown
        agent_hosts.add(shown["transcript"].split("agent on ")[1].split()[0])
    assert agent_hosts == {"worker-a", "worker-b"}
    first = tickets[-1]
    attempt_id = hosts.api("observer", f"/api/tickets/{first['id']}/runs")[0]["attempts"][0]["id"]
    logs = hosts.fleet("observer", "logs", str(attempt_id)).stdout
    assert "return a + b" in logs and "passed" in logs
    shown = hosts.fleet("observer", "show", str(first["id"])).stdout
    assert "verified" in shown or "passed" in shown, shown
    review = hosts.fleet("observer", "review", "show", str(first["id"])).stdout
    assert "+    return a + b" in review


def test_approval_from_a_host_that_ran_nothing_pushes_the_branch_to_the_url(hosts: Team) -> None:
    ticket = hosts.json("observer", "tickets")[-1]["id"]
    hosts.fleet("observer", "review", "approve", str(ticket))
    branch = f"refs/heads/fleet/ticket-{ticket}"
    landed = hosts.host("git").check("git", "-C", "/tmp/srv/calc.git", "show", f"{branch}:calc.py")
    assert "return a + b" in landed
    assert not Path("/tmp/srv/calc.git").exists()  # the repository was never on this machine's own disk
