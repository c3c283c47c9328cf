"""Costs and secrets: budgets stop new attempts with a reason; known keys never reach what Fleet stores."""

from __future__ import annotations

import shlex

from tests.core.conftest import Fleet, scripted
from workers.agents.llm.scripted_server import ScriptedModelServer


def test_a_spent_budget_stops_the_attempt_mid_way_and_says_why(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    server = ScriptedModelServer("needs-feedback")
    fleet.env.update(FLEET_LLM_BASE_URL=server.start(), FLEET_LLM_MODEL="scripted")
    try:
        [capped] = fleet.submit(
            "--repo",
            "calc",
            "--title",
            "mul",
            "--body",
            "tests/test_calc.py::test_mul",
            "--agent",
            "llm",
            "--agent-arg",
            "price_in=1000",
            "--agent-arg",
            "price_out=1000",
            "--budget-usd",
            "0.000001",
            "--attempts",
            "3",
        )
        [free] = fleet.submit(
            "--repo",
            "calc",
            "--title",
            "mul",
            "--body",
            "tests/test_calc.py::test_mul",
            "--agent",
            "llm",
            "--attempts",
            "3",
        )
        fleet.up()
    finally:
        server.stop()
    shown = fleet.json("show", str(capped["id"]))
    [run] = shown["runs"]
    # The model gateway refused the second model call of the first attempt; no further attempt was made.
    assert [a["verdict"] for a in run["attempts"]] == ["error"]
    assert run["attempts"][0]["cost_usd"] > 0
    assert shown["status"] == "error" and "budget of $0.00 ran out mid-attempt" in shown["reason"]
    assert fleet.json("show", str(free["id"]))["status"] == "needs_review"  # the other ticket was not held back


def test_known_key_shapes_and_secret_variables_are_redacted_from_transcripts(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    secret = "hunter2-the-worker-secret"
    fleet.env["DEPLOY_TOKEN"] = secret
    leak = f"echo sk-ant-api03-{'x' * 30}; echo ghp_{'a' * 36}; echo $LEAK; " + scripted("fix-add")
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        f"env LEAK={secret} sh -c {shlex.quote(leak)}",
    )
    fleet.up()
    [candidate] = fleet.json("review", "show", str(ticket["id"]))["candidates"]
    transcript = candidate["transcript"]
    assert "sk-ant-api03" not in transcript and "ghp_" not in transcript and secret not in transcript
    assert transcript.count("[redacted]") == 3
