"""A ticket's --budget-usd holds mid-attempt: the gateway refuses the model call after the budget runs out, and the
attempt ends saying so. End to end: `fleet submit --agent llm`, `fleet up`, the scripted model server on loopback,
priced by the repository's model_prices (the llm agent itself is given no price)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db import queries
from tests.conftest import make_test_fleet
from workers.agents.llm.scripted_server import ScriptedModelServer


def test_a_ticket_over_its_budget_is_stopped_mid_attempt_by_the_gateway(tmp_path: Path) -> None:
    with ScriptedModelServer("fix-add") as server:
        fleet = make_test_fleet(
            tmp_path,
            FLEET_LLM_BASE_URL=server.url,
            FLEET_LLM_MODEL="scripted",
            FLEET_LLM_RETRIES="0",
        )
        fleet.sample_repo()
        # fix-add takes three model calls; at $1,000 per million tokens the first costs more than the budget.
        fleet.run("repo", "update", "calc", "--model-price", "scripted=1000/1000")
        [ticket] = fleet.submit(
            "--repo", "calc", "--title", "add() subtracts [script:fix-add]", "--agent", "llm", "--budget-usd", "0.01"
        )
        fleet.up()
        shown: dict[str, Any] = fleet.json("show", str(ticket["id"]))
        served = len(server.requests)
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    assert served == 1  # the second call never reached the model server
    assert attempt["verdict"] == "error"
    assert attempt["error"].startswith("budget: the ticket's budget of $0.01 ran out mid-attempt")
    assert "the gateway refused the agent's further model calls" in attempt["error"]
    assert shown["status"] == "error" and "budget" in shown["reason"]
    with fleet.db().session() as s:
        first, refused = queries.model_calls(s, attempt["id"])
    assert (first.status, first.error) == (200, None) and first.cost_usd is not None and first.cost_usd > 0.01
    assert refused.status == 402 and refused.input_tokens == 0 and "budget" in (refused.error or "")
    assert attempt["cost_usd"] == first.cost_usd and attempt["tokens_in"] == first.input_tokens
    text = fleet.run("show", str(ticket["id"])).stdout
    assert "budget: the ticket's budget of $0.01 ran out mid-attempt" in text
    assert f"usage: {first.input_tokens} in / {first.output_tokens} out tokens, ${first.cost_usd:.4f}" in text
    transcript = fleet.run("logs", str(attempt["id"])).stdout
    assert "[gateway] call 2: openai-chat scripted HTTP 402" in transcript
    assert "# call 1: openai-chat scripted HTTP 200" in transcript and '> {"model":"scripted"' in transcript
