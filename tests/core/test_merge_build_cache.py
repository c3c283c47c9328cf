"""A merge build and the environment cache: the build's commit holds the queued diffs, with the base's key files."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import Fleet
from tests.core import merge_repo as mr
from workers.agents.scripted import SAMPLE_TEST_CMD

VERSION_TEST = "def test_version():\\n    assert open('VERSION').read().strip() == 'queued'\\n"


@pytest.mark.slow
def test_a_merge_build_saves_no_environment_built_from_the_queued_diffs(fleet: Fleet) -> None:
    """Saved under the key of the base's files (the diff changed none of them), what the build's setup made from the
    diff's code was restored into every later verification at that base, on a worker that had no entry for it (one
    that never verified there, or evicted it)."""
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp, extra={"VERSION": "base\n"})
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--setup-cmd", "cp VERSION .built",
              "--allow-test-edits", "--merge-slots", "1")  # fmt: skip
    [ticket] = fleet.submit("--repo", "shop", "--title", "v", "--body", "v", "--agent-cmd",
                            mr.put("VERSION", "queued\\n", "tests/test_version.py", VERSION_TEST))  # fmt: skip
    fleet.up()
    shown = fleet.json("show", str(ticket["id"]))
    assert shown["status"] == "needs_review", fleet.run("logs", str(shown["runs"][0]["attempts"][-1]["id"])).stdout[
        -3000:
    ]
    cache = fleet.home / "envs"
    assert {p.read_text() for p in cache.rglob(".built")} == {"base\n"}  # saved at the base (agent, verify)
    shutil.rmtree(cache)

    fleet.run("merge", "enqueue", str(ticket["id"]))
    fleet.up()
    assert "queued\n" in mr.git("show", "main:VERSION", cwd=bare)  # the build passed and landed
    assert [p.read_text() for p in cache.rglob(".built")] == []
