"""A running agent's output is stored as it runs: readable from the database and `fleet logs` before it ends."""

from __future__ import annotations

import json
import shlex

from db import queries
from fleet.cli.follow import unseen
from tests.core.conftest import Fleet, scripted
from tests.core.test_recovery import wait_for

KEY = "ghp_" + "a1" * 18


def stored_transcript(fleet: Fleet, attempt_id: int) -> tuple[str, str]:
    with fleet.db().session() as s:
        attempt = queries.get_attempt(s, attempt_id)
        return attempt.status, attempt.transcript


def test_a_running_agents_output_is_stored_before_it_ends(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the agent waits for a file outside its worktree
    fleet.env["FLEET_TRANSCRIPT_FLUSH_SECONDS"] = "0.2"
    fleet.sample_repo()
    gate = fleet.tmp / f"gate-{KEY}"  # the agent prints the gate's name: a credential, redacted as it is stored
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add",
        "--agent-cmd", scripted("wait-for", str(gate)),
    )  # fmt: skip
    worker = fleet.popen("up", "--until-idle", "--concurrency", "1")
    try:
        with fleet.db().session() as s:
            [attempt] = queries.open_attempts(s, ticket["id"])
            attempt_id = attempt.id
        wait_for(lambda: "waiting for gate" in stored_transcript(fleet, attempt_id)[1], timeout=20)
        status, live = stored_transcript(fleet, attempt_id)
        assert status == "running"  # the agent still waits for the gate
        assert "waiting for gate-[redacted]" in live and KEY not in live
        logs = fleet.run("logs", str(attempt_id)).stdout
        assert "waiting for gate" in logs and "edited calc.py" not in logs
        follower = fleet.popen("logs", "--follow", str(attempt_id))
        gate.touch()
        followed, _ = follower.communicate(timeout=60)
        worker.wait(timeout=120)
    finally:
        for process in (worker, *([follower] if "follower" in locals() else [])):
            if process.poll() is None:
                process.kill()
    assert followed.count("waiting for gate") == 1  # printed once, then only what came after
    assert "edited calc.py" in followed and f"the agent ended: attempt {attempt_id} is" in followed
    status, transcript = stored_transcript(fleet, attempt_id)
    assert status == "finished"
    assert "waiting for gate" in transcript and "read prompt" in transcript  # the final transcript, whole


def test_follow_prints_only_what_is_new() -> None:
    assert unseen("a\nb\n", "a\nb\nc\n") == "c\n"
    assert unseen("head\n[... 5 bytes omitted ...]\nxyz\n", "head\n[... 9 bytes omitted ...]\nxyz\nmore\n") == "more\n"
    assert unseen("", "first\n") == "first\n"


def test_logs_show_an_agents_json_events_as_steps(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    event = json.dumps({"type": "item.completed", "item": {"type": "file_change", "changes": [{"path": "calc.py"}]}})
    command = shlex.join(["sh", "-c", f"echo '{event}'; sed -i 's/return a - b/return a + b/' calc.py"])
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add", "--agent-cmd", command
    )
    fleet.up()
    [attempt] = [a for run in fleet.json("show", str(ticket["id"]))["runs"] for a in run["attempts"]]
    logs = fleet.run("logs", str(attempt["id"])).stdout
    assert "edited calc.py" in logs and '"item.completed"' not in logs
    assert event in fleet.run("logs", "--raw", str(attempt["id"])).stdout  # stored as the agent printed it
    followed = fleet.run("logs", "--follow", str(attempt["id"])).stdout
    assert "edited calc.py" in followed and "the agent ended" in followed
