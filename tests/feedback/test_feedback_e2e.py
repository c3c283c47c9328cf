"""The loop on real PyPI projects: the context pack and the feedback name what to fix; known failures never block."""

from __future__ import annotations

import json
from typing import Any

import pytest

from db.models import Baseline
from system.git import git
from tests.core.conftest import Fleet, scripted
from tests.e2e_verification.helpers import read_json, show_many
from tests.feedback.projects import ENV_FAILURE, iniconfig_repo, more_itertools_repo
from workers.agents.scripted import INI_FAILING, MI_FAILING, SAMPLE_TEST_CMD

pytestmark = pytest.mark.slow


def attempts(shown: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for run in shown["runs"] for a in run["attempts"]]


def submit_batch(fleet: Fleet, repo: str, tickets: list[dict[str, Any]], attempts: int) -> list[int]:
    batch = fleet.tmp / f"{repo}.json"
    batch.write_text(json.dumps(tickets))
    return [t["id"] for t in fleet.submit("--repo", repo, "--attempts", str(attempts), "--file", str(batch))]


def test_iniconfig_pack_feedback_regression_and_gaming(embedded: Fleet) -> None:
    """Attempt 1 from the pack; attempt 2 from the feedback; a regression leads its feedback; gaming is gamed."""
    repo = embedded.tmp / "iniconfig"
    base = iniconfig_repo(repo)
    embedded.run("repo", "add", "iniconfig", str(repo), "--test-cmd", SAMPLE_TEST_CMD)
    named = INI_FAILING[0]
    body = "Lines starting with ';' are comments too."
    ids = submit_batch(
        embedded,
        "iniconfig",
        [
            {"title": "reads the pack", "body": body, "agent_cmd": scripted("when", named, "ini-fix")},
            {"title": "reads the feedback", "body": body, "agent_cmd": scripted("idle-once", named, "ini-fix")},
            {"title": "fixes and breaks", "body": body, "agent_cmd": scripted("ini-fix-break")},
            {"title": "games", "body": body, "agent_cmd": scripted("ini-drop-cases")},
        ],
        attempts=2,
    )
    embedded.up()
    pack, feedback, breaks, games = (show_many(embedded, ids)[i] for i in ids)

    assert pack["status"] == "needs_review" and len(attempts(pack)) == 1
    [shown] = read_json(embedded, "review", "show", str(ids[0]))["candidates"]
    prompt = shown["prompt"]  # the context pack the agent read, stored with its attempt
    assert f"FAILED {named}" in prompt and "src/iniconfig/_parse.py" in prompt
    [alone] = [line for line in prompt.splitlines() if line.startswith("The targets alone:")]
    assert f"`{SAMPLE_TEST_CMD} '" in alone and f"'{named}'" in alone and "$FLEET_TARGETS" in alone
    assert feedback["status"] == "needs_review" and len(attempts(feedback)) == 2
    first = attempts(feedback)[0]["feedback_out"]
    assert "the agent changed nothing" in first and named in first and "Next: make these tests pass" in first

    assert breaks["status"] == "failed"
    out = attempts(breaks)[0]["feedback_out"]
    assert attempts(breaks)[0]["verification"]["broken"] == [
        "testing/test_iniconfig.py::test_tokenize[value with aligned continuation]"
    ]
    assert out.index("Next: fix first the regressions (passed at the base, fail now): testing/") < out.index("FAILED ")

    parent = git("rev-parse", "HEAD~1", cwd=repo).strip()
    with embedded.db().session() as s:  # one run at the base and one of its failures at the parent, for 7 attempts
        assert sorted(b.base_sha for b in s.query(Baseline)) == sorted([base, parent])

    assert games["status"] == "failed"
    assert attempts(games)[0]["verdict"] == "gamed"
    assert "Next: fix the code under test" in attempts(games)[0]["feedback_out"]


def test_more_itertools_with_an_environmental_failure(embedded: Fleet) -> None:
    """A test failing at the base and its parent the same way is known: the honest fix reaches review."""
    repo = embedded.tmp / "more_itertools"
    more_itertools_repo(repo, env_failure=True)
    embedded.run("repo", "add", "mi", str(repo), "--test-cmd", SAMPLE_TEST_CMD)
    named = MI_FAILING[0]
    body = "tail() of a list returns one item too few."
    ids = submit_batch(
        embedded,
        "mi",
        [
            {"title": "reads the pack", "body": body, "agent_cmd": scripted("when", named, "mi-fix")},
            {"title": "reads the feedback", "body": body, "agent_cmd": scripted("idle-once", named, "mi-fix")},
        ],
        attempts=2,
    )
    embedded.up()
    pack, feedback = (show_many(embedded, ids)[i] for i in ids)
    assert pack["status"] == "needs_review" and len(attempts(pack)) == 1
    [shown] = read_json(embedded, "review", "show", str(ids[0]))["candidates"]
    assert shown["verification"]["known_failing"] == [ENV_FAILURE]
    assert "; 2 targets in $FLEET_TARGETS" in shown["transcript"]
    check = attempts(pack)[0]["verification"]
    assert check["fail_to_pass"] == sorted(MI_FAILING)
    assert any(ENV_FAILURE in w and "not part of this ticket" in w for w in check["warnings"])
    assert feedback["status"] == "needs_review" and len(attempts(feedback)) == 2
    assert ENV_FAILURE not in attempts(feedback)[0]["feedback_out"].split("Next:")[1]
    assert [r["id"] for r in read_json(embedded, "review", "list")] == sorted(ids)
