"""A merge build's verdict is the whole test command's: a step after the tests that fails on the combination of
two queued diffs (a type check, a lint) keeps the second one off the target, as it would keep a diff from review."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.conftest import Fleet
from tests.core import merge_repo as mr
from tests.core.conftest import verified_then_queued
from tests.core.test_merge_queue import running, wait_for
from workers.agents.scripted import SAMPLE_TEST_CMD
from workers.merge_build import MOST_BUILD_ERRORS

# Passes while at most one of the two flags is set: each diff alone passes, their combination fails after pytest.
CHECK = "import os, sys\nsys.exit(1 if os.path.exists('flag_a.py') and os.path.exists('flag_b.py') else 0)\n"


def test_a_test_command_failing_after_its_tests_fails_the_merge_build(fleet: Fleet) -> None:
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp, extra={"check.py": CHECK})
    start = mr.git("rev-parse", "main", cwd=bare).strip()
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", f"{SAMPLE_TEST_CMD} && python3 check.py",
              "--allow-test-edits", "--merge-slots", "1")  # fmt: skip
    tickets = verified_then_queued(fleet, {name: mr.put(*mr.module(name, 1)) for name in ("flag_a", "flag_b")})

    landed = mr.commits_after(bare, start)
    assert len(landed) == 1  # the first; the second's build fails check.py on top of it
    assert all(mr.git("ls-tree", "--name-only", sha, "flag_b.py", cwd=bare) == "" for sha in landed)
    recent = {str(e["ticket"]): e for e in fleet.json("merge", "status")["recent"]}
    assert recent[tickets[1]]["status"] == "ejected"
    assert "exited 1" in recent[tickets[1]]["reason"], recent[tickets[1]]["reason"]


def test_an_entry_whose_target_is_no_branch_leaves_the_queue_with_the_cause(fleet: Fleet) -> None:
    """A ticket based on a tag or on `origin/main` would have waited in the queue for ever, its cause only in a
    worker's log; a target no branch can be named is refused when queued."""
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp)
    mr.git("tag", "v1", "main", cwd=bare)
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits")
    [ticket] = fleet.submit("--repo", "shop", "--title", "t", "--body", "t", "--base", "v1", "--agent-cmd",
                            mr.put(*mr.module("mod1", 1)))  # fmt: skip
    fleet.up()
    ticket_id = str(ticket["id"])
    refused = fleet.run("merge", "enqueue", ticket_id, "--target", "--upload-pack=touch x", check=False)
    assert refused.returncode == 1 and "not a branch name" in refused.stdout + refused.stderr
    fleet.run("merge", "enqueue", ticket_id)  # its target: v1, which is a tag
    fleet.up()
    assert fleet.json("merge", "status")["queue"] == []
    [left] = fleet.json("merge", "status")["recent"]
    assert left["status"] == "ejected" and f"{bare} has no branch v1" in left["reason"]
    assert fleet.json("show", ticket_id)["status"] == "approved"  # no agent can fix a target: enqueue it again


def _approved_in_queue(fleet: Fleet, bare_extra: dict[str, str] | None = None) -> tuple[Path, str, str]:
    """(the target, its head, a ticket approved into its merge queue), its agent run and its diff verified."""
    fleet.env.update(FLEET_AGENT_SANDBOX="false", FLEET_REDISPATCH_SECONDS="1")
    bare, _ = mr.make_target(fleet.tmp, extra=bare_extra)
    start = mr.git("rev-parse", "main", cwd=bare).strip()
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits",
              "--merge-slots", "1")  # fmt: skip
    [ticket] = fleet.submit("--repo", "shop", "--title", "mod1", "--body", "mod1", "--agent-cmd",
                            mr.put(*mr.module("mod1", 1)))  # fmt: skip
    fleet.up()
    ticket_id = str(ticket["id"])
    fleet.run("merge", "enqueue", ticket_id)
    return bare, start, ticket_id


def _break_checkouts(fleet: Fleet) -> Path:
    """The worker's verification checkouts of the repository made impossible (a file where their folder goes):
    Fleet's own failure, which says nothing of the diffs in the build."""
    pools = fleet.home / "worktrees" / "repo-1" / "verify"
    shutil.rmtree(pools)
    pools.write_text("not a folder")
    return pools


def test_a_build_fleet_could_not_verify_is_sent_again_not_taken_for_a_failing_diff(fleet: Fleet) -> None:
    # A merge build that failed on Fleet's side (a checkout, a mirror, the network) was a failed build: its entry
    # was ejected, and its ticket went back to its agent with feedback about tests that never ran.
    bare, start, ticket_id = _approved_in_queue(fleet)
    pools = _break_checkouts(fleet)
    with running(fleet.popen("up", "--until-idle", "--concurrency", "2")) as worker:
        wait_for(lambda: "it is sent again" in _queued(fleet)["reason"])
        given_back = _queued(fleet)
        pools.unlink()  # the fault is cleared: the build is sent again after the redispatch wait
        assert worker.wait(timeout=120) == 0
    assert given_back["status"] == "building" and "could not be verified on" in given_back["reason"]
    assert len(mr.commits_after(bare, start)) == 1
    [landed] = fleet.json("merge", "status")["recent"]
    assert landed["status"] == "merged", landed
    assert len(fleet.json("show", ticket_id)["runs"][0]["attempts"]) == 1  # never sent back to its agent


def test_a_build_fleet_keeps_failing_to_verify_fails_after_the_bound_naming_the_cause(fleet: Fleet) -> None:
    bare, start, ticket_id = _approved_in_queue(fleet)
    _break_checkouts(fleet)
    with running(fleet.popen("up", "--until-idle", "--concurrency", "2")) as worker:
        wait_for(lambda: _queued(fleet, "recent") is not None)
        worker.kill()
    ejected = _queued(fleet, "recent")
    assert ejected is not None and ejected["status"] == "ejected"
    assert f"the build could not be verified, {MOST_BUILD_ERRORS} times" in ejected["reason"], ejected
    assert mr.commits_after(bare, start) == []


def _queued(fleet: Fleet, part: str = "queue") -> Any:
    """The one entry of the merge queue (part "queue"), or the one that left it ("recent", None until then)."""
    found = fleet.json("merge", "status")[part]
    return found[0] if found or part == "queue" else None
