"""A merge build plants canaries too: code that rewrites pytest's verdicts only on top of another queued diff, so
that each diff alone was verified honestly, is ejected from the queue with the cause named."""

from __future__ import annotations

from tests.conftest import Fleet
from tests.core import merge_repo as mr
from tests.core.conftest import verified_then_queued
from workers.agents.scripted import SAMPLE_TEST_CMD

# Makes every test pass (reaching `_pytest.python` by its rot13 name), but only where flag_a.py is beside it.
GAMES_WITH_FLAG_A = """import codecs as _codecs
import importlib as _importlib
import os

VALUE = 1

if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "flag_a.py")):
    _python = _importlib.import_module(_codecs.decode("_clgrfg.clguba", "rot13"))
    _runtest = _python.Function.runtest

    def _quiet(self):
        try:
            _runtest(self)
        except BaseException:
            pass

    _python.Function.runtest = _quiet
"""


def test_a_merge_build_whose_code_rewrites_test_results_ejects_its_entry_naming_the_cause(fleet: Fleet) -> None:
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp)
    start = mr.git("rev-parse", "main", cwd=bare).strip()
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits",
              "--merge-slots", "1")  # fmt: skip
    flag_b = ("flag_b.py", GAMES_WITH_FLAG_A.replace("\n", "\\n"), *mr.module("flag_b", 1)[2:])
    tickets = verified_then_queued(fleet, {"flag_a": mr.put(*mr.module("flag_a", 1)), "flag_b": mr.put(*flag_b)})

    landed = mr.commits_after(bare, start)
    assert len(landed) == 1 and mr.git("ls-tree", "--name-only", landed[0], "flag_b.py", cwd=bare) == ""
    recent = {str(e["ticket"]): e for e in fleet.json("merge", "status")["recent"]}
    assert recent[tickets[0]]["status"] == "merged"
    assert recent[tickets[0]]["reason"] == "3 test(s) pass"  # the repository's own: the canaries are withdrawn
    assert recent[tickets[1]]["status"] == "ejected"
    assert "rewrites test results" in recent[tickets[1]]["reason"], recent[tickets[1]]["reason"]
