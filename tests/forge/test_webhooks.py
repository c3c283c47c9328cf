"""/api/hooks/github: signed with the webhook secret or refused; each delivery and each comment acted on once."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from orchestrator import pr_feedback
from system.forge import signature_ok
from tests.conftest import Fleet
from tests.forge.gitserver import GitServer
from tests.forge.helpers import StubDispatcher, approved_ticket, pr_repo, settings_of
from tests.forge.scripted_forge import ScriptedForge

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def test_githubs_own_test_vector() -> None:
    # docs.github.com, "Validating webhook deliveries"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_ok("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not signature_ok("It's a Secret to Everybody", b"Hello, World?", expected)
    assert not signature_ok("", b"Hello, World!", expected)  # no secret configured: nothing is accepted
    for forged in ("sha256=\xff", "sha256=\udcff", "sha256=é" * 8):  # not hex: a refusal, never an exception
        assert not signature_ok("It's a Secret to Everybody", b"Hello, World!", forged)


def _signed(secret: str, payload: dict[str, Any], event: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }
    return body, headers


def _comment(number: int, comment_id: int, author: str, text: str) -> dict[str, Any]:
    return {
        "action": "created",
        "repository": {"full_name": "acme/shop"},
        "issue": {"number": number, "pull_request": {"url": "..."}},
        "comment": {"id": comment_id, "body": text, "user": {"login": author}},
    }


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_a_signed_comment_starts_one_attempt_and_a_bad_signature_none(
    fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge
) -> None:
    from fastapi.testclient import TestClient

    from orchestrator.web.app import create_app

    fleet = fleet_with_forge
    pr_repo(fleet, git_server, forge)
    decision = approved_ticket(fleet, "by-attempt", "fix-add", "fix-add+fix-div")
    [pull] = forge.pulls.values()
    settings = settings_of(fleet)
    client = TestClient(create_app(settings, lambda s: StubDispatcher()), base_url="https://localhost")
    secret = settings.webhook_secret.get_secret_value()
    payload = _comment(pull["number"], 77, "alice", "/fleet also handle negative numbers")

    from orchestrator.web.auth import Role, new_token

    viewer = new_token(client.app.state.fleet.db, Role.VIEWER, "viewer1", "test")[1]  # type: ignore[attr-defined]
    page = client.get(f"/tickets/{decision['id']}", headers={"Authorization": f"Bearer {viewer}"})
    assert page.status_code == 200 and f'href="{pull["html_url"]}"' in page.text  # the ticket page links the PR

    body, headers = _signed("not-the-secret", payload, "issue_comment", "d-1")
    assert client.post("/api/hooks/github", content=body, headers=headers).status_code == 401
    assert (
        client.post("/api/hooks/github", content=body, headers={"X-GitHub-Event": "issue_comment"}).status_code == 401
    )
    assert fleet.json("show", str(decision["id"]))["status"] == "approved"

    body, headers = _signed(secret, payload, "issue_comment", "d-2")
    answer = client.post("/api/hooks/github", content=body, headers=headers)
    assert answer.status_code == 200 and len(answer.json()["attempts"]) == 1
    assert fleet.json("show", str(decision["id"]))["status"] == "queued"
    again = client.post("/api/hooks/github", content=body, headers=headers)  # GitHub's redelivery: same id
    assert again.status_code == 200 and again.json()["attempts"] == []

    fleet.up()
    fleet.run("review", "approve", str(decision["id"]))  # the PR is updated and waits again
    # the poll reads the same comment from the API: already acted on, so nothing more
    forge.comments.setdefault(pull["number"], []).append(payload["comment"])
    assert pr_feedback.poll(fleet.db(), StubDispatcher(), settings) == 0
    assert fleet.json("show", str(decision["id"]))["status"] == "approved"

    body, headers = _signed(secret, {"zen": "Keep it logically awesome."}, "ping", "d-3")
    assert client.post("/api/hooks/github", content=body, headers=headers).json()["attempts"] == []


def test_each_event_gives_the_same_keys_the_poll_does() -> None:
    from system.github import webhook_remarks

    repo = {"full_name": "acme/shop"}
    review = {"id": 5, "state": "changes_requested", "body": "no", "user": {"login": "alice"}}
    name, numbers, [remark] = webhook_remarks(
        "pull_request_review",
        {"action": "submitted", "repository": repo, "review": review, "pull_request": {"number": 2}},
    )
    assert (name, numbers, remark.key, remark.kind, remark.author) == ("acme/shop", [2], "review:5", "review", "alice")
    run = {"id": 9, "name": "ci", "conclusion": "timed_out", "pull_requests": [{"number": 2}], "output": {}}
    _, numbers, [remark] = webhook_remarks("check_run", {"action": "completed", "repository": repo, "check_run": run})
    assert (numbers, remark.key, remark.text) == ([2], "check:9", "The check 'ci' ended timed_out.")
    line = {"id": 3, "body": "/fleet x", "user": {"login": "alice"}, "path": "a.py", "line": 4}
    _, numbers, [remark] = webhook_remarks(
        "pull_request_review_comment",
        {"action": "created", "repository": repo, "comment": line, "pull_request": {"number": 2}},
    )
    assert (remark.key, remark.path, remark.line) == ("line-comment:3", "a.py", 4)
    approved = review | {"state": "approved"}
    assert (
        webhook_remarks("pull_request_review", {"action": "submitted", "repository": repo, "review": approved})[2] == []
    )
    issue = {"action": "created", "repository": repo, "issue": {"number": 1}, "comment": line}  # an issue, not a PR
    assert webhook_remarks("issue_comment", issue)[2] == []


def _check_run(number: int, run_id: int, sha: str) -> dict[str, Any]:
    run = {"id": run_id, "name": "ci", "conclusion": "failure", "head_sha": sha, "pull_requests": [{"number": number}]}
    return {"action": "completed", "repository": {"full_name": "acme/shop"}, "check_run": run | {"output": {}}}


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_a_failed_check_of_an_earlier_commit_of_the_branch_reopens_nothing(
    fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge
) -> None:
    """GitHub lists a check of any commit of the PR's branch with the PR (`pull_requests`): one of a commit the PR
    no longer holds, ending after an update, is no feedback on what it holds now; one of its head is."""
    from fastapi.testclient import TestClient

    from orchestrator.web.app import create_app

    fleet = fleet_with_forge
    pr_repo(fleet, git_server, forge)
    decision = approved_ticket(fleet, "fix-add")
    [pull] = forge.pulls.values()
    settings = settings_of(fleet)
    client = TestClient(create_app(settings, lambda s: StubDispatcher()), base_url="https://localhost")
    secret = settings.webhook_secret.get_secret_value()
    for number, (sha, delivery) in enumerate([("0" * 40, "c-1"), ("", "c-2")], start=100):
        body, headers = _signed(secret, _check_run(pull["number"], number, sha), "check_run", delivery)
        assert client.post("/api/hooks/github", content=body, headers=headers).json()["attempts"] == []
    assert fleet.json("show", str(decision["id"]))["status"] == "approved"
    body, headers = _signed(secret, _check_run(pull["number"], 102, decision["commit"]), "check_run", "c-3")
    assert len(client.post("/api/hooks/github", content=body, headers=headers).json()["attempts"]) == 1
    assert fleet.json("show", str(decision["id"]))["status"] == "queued"
