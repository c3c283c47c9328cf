"""Scheduling end to end: a per-repo limit holds under a burst, and a small repo is served during a big backlog."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.core.conftest import Fleet


@pytest.mark.slow
def test_a_repo_limit_holds_under_a_burst_of_200_tickets_and_others_are_served(fleet: Fleet) -> None:
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the test watches the agent through a file outside its worktree
    log = fleet.tmp / "agent.log"
    stamp = "$FLEET_TICKET_ID $(date +%s.%N)"
    agent = f"echo start {stamp} >> {log}; sleep 0.05; echo end {stamp} >> {log}"
    command = f"sh -c {shlex.quote(agent)}"
    for name, limit in (("big", "2"), ("small", "0")):
        from workers.agents.scripted import write_sample_repo

        write_sample_repo(fleet.tmp / name)
        fleet.run("repo", "add", name, str(fleet.tmp / name), "--test-cmd", "true", "--max-concurrency", limit)
    (fleet.tmp / "big.json").write_text(json.dumps([{"title": f"big {n}"} for n in range(200)]))
    (fleet.tmp / "small.json").write_text(json.dumps([{"title": f"small {n}"} for n in range(5)]))
    big = fleet.submit("--repo", "big", "--agent-cmd", command, "--attempts", "1", "--file", "big.json")
    small = fleet.submit("--repo", "small", "--agent-cmd", command, "--attempts", "1", "--file", "small.json")
    fleet.up(concurrency=6)

    events = [line.split() for line in log.read_text().splitlines()]
    big_ids = {t["id"] for t in big}
    small_ids = {t["id"] for t in small}
    running: set[int] = set()
    most = 0
    for kind, ticket, _ in sorted(events, key=lambda e: float(e[2])):
        if int(ticket) in big_ids:
            running.add(int(ticket)) if kind == "start" else running.discard(int(ticket))
            most = max(most, len(running))
    assert most <= 2
    assert sum(1 for e in events if e[0] == "start") == 205  # every ticket ran, once
    starts = {int(t): float(ts) for kind, t, ts in events if kind == "start"}
    last_small = max(starts[t] for t in small_ids)
    big_after_small = [t for t in big_ids if starts[t] > last_small]
    assert len(big_after_small) > 150  # the five small tickets did not wait behind the backlog
    assert {t["status"] for t in fleet.json("tickets")} == {"failed"}  # the agents changed nothing
