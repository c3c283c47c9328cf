"""The llm agent end to end: `fleet submit --agent llm`, `fleet up --until-idle`, a scripted model server on loopback.

One Fleet installation and one `fleet up` serve every scripted model at once (each ticket names its script with a
[script:NAME] marker that the server reads from the prompt); a second `fleet up` runs after the server is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fleet, make_test_fleet
from workers.agents.llm.scripted_server import ScriptedModelServer

TICKETS = {
    "fix-add": dict(title="add() subtracts [script:fix-add]", body="tests/test_calc.py::test_add fails", attempts=1),
    "needs-feedback": dict(
        title="mul() is off by one [script:needs-feedback]", body="tests/test_calc.py::test_mul fails", attempts=2
    ),
    "game-tests": dict(title="add() is wrong [script:game-tests]", body="tests/test_calc.py::test_add", attempts=1),
    "stash-pop": dict(title="add() is off [script:stash-pop]", body="tests/test_calc.py::test_add fails", attempts=1),
    "never-finish": dict(title="div() floors [script:never-finish]", body="tests/test_calc.py::test_div", attempts=1),
    "garbage": dict(title="add() again [script:garbage]", body="tests/test_calc.py::test_add", attempts=1),
}


@dataclass
class Session:
    fleet: Fleet
    server: ScriptedModelServer
    tickets: dict[str, dict[str, Any]]  # script -> `fleet show --json` after the run
    down: dict[str, Any]  # the ticket run while no model server listened


def _fleet(home: Path, base_url: str) -> Fleet:
    return make_test_fleet(
        home,
        FLEET_LEASE_SECONDS="3",
        FLEET_LLM_BASE_URL=base_url,
        FLEET_LLM_MODEL="scripted",
        FLEET_LLM_STEP_LIMIT="6",
        FLEET_LLM_RETRIES="1",
        FLEET_LLM_BACKOFF_SECONDS="0.1",
        FLEET_LLM_PRICE_IN="3",
        FLEET_LLM_PRICE_OUT="15",
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("llm-fleet")
    server = ScriptedModelServer("fix-add")
    server.start()
    fleet = _fleet(tmp, server.url)
    fleet.sample_repo()
    batch = tmp / "tickets.json"
    batch.write_text(json.dumps([{**fields, "agent": "llm"} for fields in TICKETS.values()]))
    submitted = fleet.json("submit", "--repo", "calc", "--file", str(batch))
    fleet.up(concurrency=len(TICKETS))
    shown = {script: fleet.json("show", str(t["id"])) for script, t in zip(TICKETS, submitted, strict=True)}
    server.stop()  # from here on nothing listens at FLEET_LLM_BASE_URL
    [late] = fleet.submit("--repo", "calc", "--title", "add [script:fix-add]", "--agent", "llm", "--attempts", "1")
    fleet.up()
    yield Session(fleet, server, shown, fleet.json("show", str(late["id"])))


def attempts(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for run in ticket["runs"] for a in run["attempts"]]


def test_a_model_that_fixes_the_bug_reaches_review_with_its_cost(session: Session) -> None:
    ticket = session.tickets["fix-add"]
    assert ticket["status"] == "needs_review"
    [attempt] = attempts(ticket)
    assert attempt["verdict"] == "passed"
    assert attempt["tokens_in"] > 0 and attempt["tokens_out"] > 0
    assert attempt["cost_usd"] == pytest.approx((attempt["tokens_in"] * 3 + attempt["tokens_out"] * 15) / 1e6)


def test_git_state_the_model_makes_in_one_command_is_there_at_the_next(session: Session) -> None:
    """Each of the llm agent's commands is a sandbox of its own: its git dir must outlive them all."""
    ticket = session.tickets["stash-pop"]
    assert ticket["status"] == "needs_review", ticket
    [attempt] = attempts(ticket)
    assert attempt["verdict"] == "passed" and attempt["diff_stat"] == "1 file, +1 -1"


def test_the_transcript_is_the_conversation_in_json_lines(session: Session) -> None:
    [attempt] = attempts(session.tickets["fix-add"])
    logs = session.fleet.run("logs", str(attempt["id"])).stdout
    assert "sed -i.bak -e 's/return a - b/return a + b/' calc.py" in logs
    assert "[end: finished;" in logs
    raw = session.fleet.run("logs", "--raw", str(attempt["id"])).stdout
    assert '"event": "end", "reason": "finished"' in raw


def test_a_wrong_fix_is_corrected_on_attempt_two_from_fleets_feedback(session: Session) -> None:
    ticket = session.tickets["needs-feedback"]
    first, second = attempts(ticket)
    assert (first["verdict"], second["verdict"]) == ("failed", "passed")
    assert ticket["status"] == "needs_review"
    assert "tests/test_calc.py::test_mul" in first["feedback_out"]
    tickets = [msgs[1]["content"] for _, msgs in session.server.requests]
    prompts = [text for text in tickets if "[script:needs-feedback]" in text]
    assert any("## Feedback on your previous attempt" in p for p in prompts)  # the model read the feedback
    assert any("## Feedback" not in p for p in prompts)


def test_a_model_that_edits_the_tests_is_caught(session: Session) -> None:
    ticket = session.tickets["game-tests"]
    [attempt] = attempts(ticket)
    assert attempt["verdict"] == "gamed"
    assert ticket["status"] != "needs_review"


def test_a_model_that_never_finishes_hits_the_step_limit(session: Session) -> None:
    [attempt] = attempts(session.tickets["never-finish"])
    assert attempt["verdict"] == "error"
    assert attempt["error"] == "llm agent stopped: step limit of 6 reached before FLEET_DONE"


def test_garbage_from_the_model_server_is_an_error_naming_the_cause(session: Session) -> None:
    [attempt] = attempts(session.tickets["garbage"])
    assert attempt["verdict"] == "error"
    assert "the answer is not JSON" in attempt["error"]


def test_a_model_server_that_is_down_is_an_error_naming_the_cause(session: Session) -> None:
    [attempt] = attempts(session.down)
    assert attempt["verdict"] == "error"
    assert f"model server {session.server.url}/chat/completions: unreachable" in attempt["error"]
    assert "(after 2 tries)" in attempt["error"]
