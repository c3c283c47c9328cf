"""Approve with each delivery mode: a local branch, a push to a real git server, a pull request on a scripted GitHub."""

from __future__ import annotations

import subprocess

import pytest

from db.specs import RepoSettings
from tests.conftest import Fleet
from tests.core.conftest import scripted
from tests.forge.conftest import served_sample
from tests.forge.gitserver import GitServer
from tests.forge.scripted_forge import ScriptedForge
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo


def _ticket(fleet: Fleet, *script: str) -> int:
    [ticket] = fleet.submit(
        "--repo", "shop", "--title", "add() subtracts", "--body", "tests/test_calc.py::test_add fails",
        "--agent-cmd", scripted(*script), "--attempts", "1",
    )  # fmt: skip
    fleet.up()
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review"
    return int(ticket["id"])


def _served(server: GitServer, ref: str, path: str = "calc.py") -> str:
    bare = server.root / "shop.git"
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=bare, capture_output=True, text=True).stdout


def _add(fleet: Fleet, where: str, *options: str) -> None:
    fleet.run("repo", "add", "shop", where, "--test-cmd", SAMPLE_TEST_CMD, *options)


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_branch_delivery_lands_a_local_branch_and_pushes_nothing(
    fleet_with_forge: Fleet, git_server: GitServer
) -> None:
    fleet = fleet_with_forge
    from workers.agents.scripted import write_sample_repo

    folder = fleet.tmp / "shop"
    write_sample_repo(folder)
    _add(fleet, str(folder), "--deliver", "branch")
    ticket = _ticket(fleet, "fix-add")
    decision = fleet.json("review", "approve", str(ticket))
    assert decision["branch"] == "fleet/ticket-1" and decision["pr_url"] == ""
    shown = subprocess.run(["git", "show", "fleet/ticket-1:calc.py"], cwd=folder, capture_output=True, text=True)
    assert "return a + b" in shown.stdout
    assert git_server.seen_auth == []


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_push_delivery_pushes_the_branch_to_the_remote_with_the_workers_token(
    fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge
) -> None:
    fleet = fleet_with_forge
    url = served_sample(fleet, git_server)
    _add(fleet, url, "--deliver", "push")
    assert fleet.json("repo", "list")[0]["source"] == url  # registered by URL: cloned into a mirror, not a folder
    ticket = _ticket(fleet, "fix-add")
    out = fleet.run("review", "approve", str(ticket)).stdout
    assert "fleet/ticket-1" in out
    assert "return a + b" in _served(git_server, "fleet/ticket-1")
    assert "return a - b" in _served(git_server, "main")  # the target is never touched by push
    assert any(git_server.authorised(auth) for auth in git_server.seen_auth)
    assert forge.requests == []


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_pr_delivery_opens_a_pull_request_with_the_verification_report(
    fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge
) -> None:
    fleet = fleet_with_forge
    url = served_sample(fleet, git_server)
    _add(fleet, url, "--deliver", "pr", "--forge-url", forge.url, "--forge-repo", "acme/shop", "--pr-label", "fleet",
         "--pr-draft")  # fmt: skip
    ticket = _ticket(fleet, "fix-add")
    decision = fleet.json("review", "approve", str(ticket))
    [pull] = forge.pulls.values()
    assert decision["pr_url"] == pull["html_url"]
    assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"], pull["draft"]) == (
        "fleet/ticket-1", "main", "add() subtracts", True,
    )  # fmt: skip
    body = pull["body"]
    assert "tests/test_calc.py::test_add fails" in body and "Verified by Fleet" in body
    assert "` tests/test_calc.py::test_add `" in body and "Still passing:" in body and "Flags: none" in body
    assert "http://fleet.example/tickets/1" in body and "Cost: $" in body
    assert [label["name"] for label in pull["labels"]] == ["fleet"]
    [status] = forge.statuses[decision["commit"]]
    assert (status["state"], status["context"]) == ("success", "fleet/verification")
    assert "return a + b" in _served(git_server, "fleet/ticket-1")
    assert forge.violations == []
    shown = fleet.json("show", str(ticket))
    assert shown["pr_url"] == pull["html_url"]
    assert pull["html_url"] in fleet.run("show", str(ticket)).stdout


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_merge_delivery_approves_into_the_merge_queue(fleet_with_forge: Fleet, git_server: GitServer) -> None:
    fleet = fleet_with_forge
    _add(fleet, served_sample(fleet, git_server), "--deliver", "merge", "--target-branch", "main")
    ticket = _ticket(fleet, "fix-add")
    approved = fleet.json("review", "approve", str(ticket))
    assert approved["status"] == "approved" and approved["queued_to"] == "main" and approved["commit"] == ""
    [entry] = [e for e in fleet.json("merge", "status")["queue"] if e["ticket"] == ticket]
    assert entry["target"] == "main"


def test_a_url_with_a_password_is_refused(fleet_with_forge: Fleet, git_server: GitServer) -> None:
    url = served_sample(fleet_with_forge, git_server).replace("http://", "http://bot:secret@")
    refused = fleet_with_forge.run("repo", "add", "shop", url, "--test-cmd", SAMPLE_TEST_CMD, check=False)
    assert refused.returncode == 1 and "may not carry a password" in refused.stderr
    assert "secret" not in refused.stderr


def test_a_remote_or_forge_url_with_a_password_is_refused_and_not_echoed(fleet_with_forge: Fleet) -> None:
    """Stored, listed by `fleet repo list` and named by every failed push, such a password would leak."""
    folder = fleet_with_forge.tmp / "shop"
    write_sample_repo(folder)
    for option in ("--remote", "--forge-url"):
        refused = fleet_with_forge.run("repo", "add", "shop", str(folder), "--test-cmd", SAMPLE_TEST_CMD, option,
                                       "https://bot:s3cret@127.0.0.1:9/shop.git", check=False)  # fmt: skip
        assert refused.returncode == 1 and "may not carry a password" in refused.stderr
        assert "s3cret" not in refused.stderr + refused.stdout
    assert fleet_with_forge.json("repo", "list") == []
    stored = "https://bot:s3cret@127.0.0.1:9/shop.git"  # what an older version stored is read, never refused
    assert RepoSettings.from_stored({"remote": stored}).remote == stored
