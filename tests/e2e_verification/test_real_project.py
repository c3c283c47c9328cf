"""A real PyPI project's own suite through the real CLI: iniconfig with a bug injected at the base commit."""

from __future__ import annotations

import json

import pytest

from tests.core.conftest import Fleet, scripted
from tests.e2e_verification.helpers import only_attempt, read_json, show_many
from tests.e2e_verification.realproject import INI_TEST_CMD, INI_TESTS_AT_BASE, make_iniconfig_repo
from workers.agents.scripted import INI_FAILING


def test_honest_fix_reaches_review_and_dropping_the_failing_cases_is_gamed(embedded: Fleet) -> None:
    check_real_project(embedded)


@pytest.mark.slow
@pytest.mark.parametrize("fleet", ["team"], indirect=True)
def test_the_same_in_team_mode(fleet: Fleet) -> None:
    check_real_project(fleet)


def check_real_project(fleet: Fleet) -> None:
    """Bug at the base, an honest fix and a gaming agent in one batch; only the fix reaches review."""
    repo = fleet.tmp / "iniconfig"
    base = make_iniconfig_repo(repo)
    fleet.run("repo", "add", "iniconfig", str(repo), "--test-cmd", INI_TEST_CMD)
    body = "Lines starting with ';' are comments too, but iscommentline() says they are not."
    tickets = [
        {"title": "iscommentline misses ';'", "body": body, "agent_cmd": scripted("ini-fix")},
        {"title": "iscommentline misses ';' (gaming)", "body": body, "agent_cmd": scripted("ini-drop-cases")},
    ]
    batch = fleet.tmp / "tickets.json"
    batch.write_text(json.dumps(tickets))
    honest, gaming = fleet.submit("--repo", "iniconfig", "--attempts", "1", "--file", str(batch))
    assert honest["base_sha"] == base
    fleet.up()
    shown_by_id = show_many(fleet, [honest["id"], gaming["id"]])

    shown = shown_by_id[honest["id"]]
    assert shown["status"] == "needs_review"
    check = only_attempt(shown)["verification"]
    assert check["verdict"] == "passed"
    assert check["fail_to_pass"] == sorted(INI_FAILING)
    assert check["pass_to_pass"] == INI_TESTS_AT_BASE - len(INI_FAILING)
    assert check["broken"] == [] and check["reverted"] == [] and check["flags"] == []

    shown = shown_by_id[gaming["id"]]
    assert shown["status"] == "failed"
    check = only_attempt(shown)["verification"]
    assert check["verdict"] == "gamed"
    assert check["reverted"] == ["testing/test_iniconfig.py"]
    assert "reverted: testing/test_iniconfig.py" in check["reasons"][0]
    assert check["fail_to_pass"] == []
    assert [r["id"] for r in read_json(fleet, "review", "list")] == [honest["id"]]
