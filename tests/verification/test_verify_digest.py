"""feedback_digest: bounded, closest-to-the-assertion feedback that never names a hidden test."""

from __future__ import annotations

import pytest

from db.lifecycle import Verdict
from verification.digest import feedback_digest, targets_digest
from verification.judge import Judgement, judge
from verification.report import Outcome, TestResult
from verification.runner import TestRun

HIDDEN_FILE = "tests/test_hidden_calc.py"
HIDDEN = f"{HIDDEN_FILE}::test_add_large"


def failing(test_id: str, lines: int = 40) -> TestResult:
    trace = "\n".join(f"frame {i} of {test_id}" for i in range(lines)) + "\nE   assert -1 == 5"
    return TestResult(test_id, Outcome.FAILED, "AssertionError: assert -1 == 5", trace)


def runs(ids: list[str], lines: int = 40) -> tuple[TestRun, TestRun]:
    base = TestRun({t: failing(t, lines) for t in ids}, 1, True, "", 0.1)
    return base, TestRun({t: failing(t, lines) for t in ids}, 1, True, "FAILED " + " ".join(ids), 0.1)


def test_assertion_and_last_traceback_lines() -> None:
    base, now = runs(["tests/test_calc.py::test_add"])
    text = feedback_digest(now, judge(base, now))
    assert text.startswith("Verification: failed")
    assert "AssertionError: assert -1 == 5" in text
    assert "E   assert -1 == 5" in text and "frame 39" in text
    assert "frame 0 of" not in text


@pytest.mark.parametrize("limit", [120, 400, 1000, 4000])
@pytest.mark.parametrize("count,lines", [(1, 5000), (60, 40), (3, 3)])
def test_never_over_the_limit(limit: int, count: int, lines: int) -> None:
    base, now = runs([f"tests/test_calc.py::test_{i}[é-{i}]" for i in range(count)], lines)
    text = feedback_digest(now, judge(base, now), limit_bytes=limit)
    assert len(text.encode()) <= limit


def test_hidden_tests_are_counted_not_named() -> None:
    ids = ["tests/test_calc.py::test_add", HIDDEN, f"{HIDDEN_FILE}::test_add_negative"]
    base, now = runs(ids)
    j = judge(base, now)
    for hidden in ([HIDDEN_FILE], [HIDDEN, f"{HIDDEN_FILE}::test_add_negative"]):
        text = feedback_digest(now, j, hidden=hidden)
        assert "2 hidden tests failed" in text
        assert "test_hidden" not in text and "test_add_large" not in text
        assert "tests/test_calc.py::test_add" in text


def test_hidden_run_output_is_never_shown() -> None:
    now = TestRun({}, 3, False, f"INTERNALERROR in {HIDDEN}", 0.1)
    j = Judgement(Verdict.FAILED, ["the test run crashed"], [], 0, [], [])
    assert HIDDEN not in feedback_digest(now, j, hidden=[HIDDEN_FILE])
    assert "INTERNALERROR" in feedback_digest(now, j)


def test_a_mistyped_target_names_the_closest_test_in_the_feedback_and_the_prompt() -> None:
    """The agent reads which test was probably meant (a reason about a shown test is told by its block)."""
    typo, meant = "tests/test_calc.py::test_ad", "tests/test_calc.py::test_add"
    base, now = runs([meant])
    text = feedback_digest(now, judge(base, now, [typo]))
    assert f"{typo}: missing from the results (did you mean {meant}?)" in text
    first = targets_digest("", base, [typo])
    assert f"{typo}: no such test at the base commit; write it if the ticket asks for a new test" in first
    assert f"(did you mean {meant}?)" in first
