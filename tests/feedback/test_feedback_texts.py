"""Every feedback says what to do next: targets for an empty diff, regressions first, the rule, the environment."""

from __future__ import annotations

from db.lifecycle import Verdict
from verification.digest import GAMED_NEXT, feedback_digest, targets_digest
from verification.judge import judge, verdict_only
from verification.report import Outcome, TestResult
from verification.runner import TestRun
from verification.verify import errored

TARGET, OTHER, HIDDEN = "tests/test_a.py::test_bug", "tests/test_a.py::test_other", "tests/test_h.py::test_h"


def result(test_id: str, ok: bool, message: str = "") -> TestResult:
    outcome = Outcome.PASSED if ok else Outcome.FAILED
    return TestResult(
        test_id, outcome, message, f"E   {message}\n\ntests/test_a.py:3: AssertionError" if message else ""
    )


def run(*results: TestResult) -> TestRun:
    return TestRun({r.test_id: r for r in results}, 0 if all(r.ok for r in results) else 1, True, "", 0.1)


BASE = run(result(TARGET, False, "AssertionError: assert 1 == 2"), result(OTHER, True), result(HIDDEN, False, "x"))


def test_an_empty_diff_gets_the_targets_and_how_they_fail_never_a_hidden_one() -> None:
    text = targets_digest("the diff was refused: the agent changed nothing", BASE, [TARGET, HIDDEN], 4000, [HIDDEN])
    assert text.startswith("Verification: failed\n- the diff was refused: the agent changed nothing\nNext: make")
    assert f"FAILED {TARGET}" in text and "AssertionError: assert 1 == 2" in text and HIDDEN not in text


def test_failed_leads_with_the_regressions_then_the_targets_still_failing() -> None:
    now = run(result(TARGET, False, "AssertionError: assert 1 == 2"), result(OTHER, False, "KeyError: 'k'"))
    text = feedback_digest(now, judge(BASE, now, [TARGET]))
    nxt = next(line for line in text.splitlines() if line.startswith("Next:"))
    regressions = f"first the regressions (passed at the base, fail now): {OTHER}"
    assert nxt == f"Next: fix {regressions}; then the tests still failing: {TARGET}."
    assert text.index(f"FAILED {OTHER}") < text.index(f"FAILED {TARGET}")
    reasons = [line for line in text.splitlines() if line.startswith("- ")]
    assert "passed at the base" in reasons[0]


def test_gamed_names_the_rule_and_what_is_allowed() -> None:
    judgement = verdict_only(
        Verdict.GAMED, "the diff changed protected test files or test settings, reverted: tests/test_a.py"
    )
    text = feedback_digest(run(result(TARGET, True)), judgement)
    assert "reverted: tests/test_a.py" in text and GAMED_NEXT in text and "fix the code under test" in text


def test_an_error_says_it_is_the_environment_not_the_agent() -> None:
    text = errored("the setup command failed: pip could not reach the index").feedback
    assert "pip could not reach the index" in text and "not of your change" in text
