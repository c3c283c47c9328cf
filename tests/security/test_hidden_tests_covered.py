"""A repository's hidden tests are covered in every sandbox, even where a folder the sandbox shows holds them: an
agent whose operator shares a folder with its sandboxes (`FLEET_SANDBOX_READ_PATHS`) that also holds the hidden
tests cannot read them and write its fix to them."""

from __future__ import annotations

import json
import shlex
import uuid

import pytest

from system.sandbox import bwrap_missing
from tests.conftest import Fleet
from workers.agents.scripted import write_sample_repo

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

MARK = "hidden-" + uuid.uuid4().hex


def test_an_agent_cannot_read_hidden_tests_inside_a_folder_its_sandbox_is_shown(embedded: Fleet) -> None:
    fleet = embedded
    repo, shared = fleet.tmp / "repo", fleet.tmp / "shared"
    write_sample_repo(repo)
    hidden = shared / "hidden" / "tests"
    hidden.mkdir(parents=True)
    (shared / "readme.txt").write_text("shown to every sandbox\n")
    (hidden / "test_hidden_add.py").write_text(
        f"# {MARK}\nfrom calc import add\n\n\ndef test_add_more():\n    assert add(2, 3) == 5\n"
    )
    fleet.env["FLEET_SANDBOX_READ_PATHS"] = json.dumps([str(shared)])
    fleet.run(
        "repo", "add", "r", str(repo), "--test-cmd", "python -m pytest -q", "--hidden-tests", str(shared / "hidden")
    )
    peek = (
        f"cat {shlex.quote(str(shared / 'readme.txt'))}; cat {shlex.quote(str(hidden / 'test_hidden_add.py'))};"
        " sed -i 's/return a - b/return a + b/' calc.py"
    )
    [ticket] = fleet.submit(
        "--repo", "r", "--title", "t", "--attempts", "1", "--agent-cmd", f"sh -c {shlex.quote(peek)}"
    )
    fleet.up()
    attempt = fleet.json("show", str(ticket["id"]))["runs"][0]["attempts"][0]
    transcript = fleet.run("logs", str(attempt["id"])).stdout
    assert "shown to every sandbox" in transcript  # the shared folder is shown
    assert MARK not in transcript and MARK not in (attempt.get("diff") or "")
    assert "tests/test_hidden_add.py::test_add_more" in attempt["verification"]["fail_to_pass"]  # and it judged
