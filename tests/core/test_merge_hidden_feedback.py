"""An entry a hidden test ejects from the merge queue is not told that test's name: the build's code ran beside the
hidden tests, and a failing test's name, or a reason's words, are texts it could have written."""

from __future__ import annotations

from pathlib import Path

from db.models import Attempt, Review
from tests.conftest import Fleet
from tests.core import merge_repo as mr
from tests.core.conftest import verified_then_queued
from workers.agents.scripted import SAMPLE_TEST_CMD

HIDDEN_NAME = "test_the_parts_stay_under_three"
HIDDEN_TEST = f"""import importlib


def {HIDDEN_NAME}():
    total = 0
    for name in ("part_a", "part_b"):
        try:
            total += importlib.import_module(name).VALUE
        except ImportError:
            pass
    assert total < 3
"""


def _hidden_tests(tmp: Path) -> Path:
    folder = tmp / "hidden"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_parts_budget.py").write_text(HIDDEN_TEST)
    return folder


def _ejected_second_part(fleet: Fleet, *options: str, extra: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Two parts queued, each keeping the budget test passing alone; the second, on top of the first, does not and
    is ejected: what its agent was told, and its attempts' prompts."""
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    bare, _ = mr.make_target(fleet.tmp, extra=extra)
    fleet.run("repo", "add", "shop", str(bare), "--test-cmd", SAMPLE_TEST_CMD, "--allow-test-edits",
              "--merge-slots", "1", *options)  # fmt: skip
    parts = {name: mr.put(*mr.module(name, 2)) for name in ("part_a", "part_b")}
    tickets = [int(ticket) for ticket in verified_then_queued(fleet, parts, "--attempts", "1")]

    recent = {e["ticket"]: e for e in fleet.json("merge", "status")["recent"]}
    assert recent[tickets[0]]["status"] == "merged" and recent[tickets[1]]["status"] == "ejected"
    assert "test_parts_budget.py" in recent[tickets[1]]["reason"]  # people read the entry's reason whole
    with fleet.db().session() as s:
        [told] = [r.feedback for r in s.query(Review).filter_by(ticket_id=tickets[1], reviewer="merge queue")]
        return told, [a.prompt for a in s.query(Attempt).filter_by(ticket_id=tickets[1])]


def test_an_entry_a_hidden_test_ejects_is_told_no_test_name(fleet: Fleet) -> None:
    """Its agent's next prompt said `These tests fail with your change on top of it: tests/test_parts_budget...`."""
    told, prompts = _ejected_second_part(fleet, "--hidden-tests", str(_hidden_tests(fleet.tmp)))
    assert "Tests fail with your change on top of it. They are not named here" in told
    for text in (told, *prompts):
        assert "test_parts_budget" not in text and HIDDEN_NAME not in text


def test_an_entry_a_visible_test_ejects_is_told_its_name(fleet: Fleet) -> None:
    told, prompts = _ejected_second_part(fleet, extra={"tests/test_parts_budget.py": HIDDEN_TEST})
    expected = f"These tests fail with your change on top of it: tests/test_parts_budget.py::{HIDDEN_NAME}."
    assert expected in told and expected in prompts[-1]
