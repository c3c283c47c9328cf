"""Unit checks of the guards the end-to-end corpus relies on (they belong in tests/verification/ later)."""

from __future__ import annotations

import pytest

from verification.flags import assertion_inputs, scan_diff
from verification.judge import report_disagrees
from verification.report import Outcome, TestResult
from verification.runner import TestRun, pytest_summary

TESTS = "def test_add():\n    assert add(2, 3) == 5\n    assert neg(2) == -2\n    assert parse('name = x') == {}\n"


def _diff(*added: str, path: str = "calc.py") -> str:
    lines = [f"diff --git a/{path} b/{path}", f"--- a/{path}", f"+++ b/{path}", "@@ -1 +1 @@"]
    return "\n".join([*lines, *(f"+{line}" for line in added)]) + "\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("3 failed, 1 passed in 0.10s\n", {"failed": 3, "passed": 1}),
        ("===== 1 failed, 2 passed, 1 warning in 0.12s (0:00:00) =====\n", {"failed": 1, "passed": 2, "warning": 1}),
        ("2 passed, 3 subtests passed in 1.00s", {"passed": 2, "subtests passed": 3}),
        ("fake: 9 passed in 0.1s\n1 passed in 0.1s\n", {"passed": 1}),
        ("no tests ran in 0.01s\n", None),
        ("", None),
    ],
)
def test_pytest_summary(output: str, expected: dict[str, int] | None) -> None:
    found = pytest_summary(output)
    assert (found[1] if found else None) == expected


def _run(output: str, outcomes: list[Outcome]) -> TestRun:
    results = {f"t.py::test_{i}": TestResult(f"t.py::test_{i}", o) for i, o in enumerate(outcomes)}
    return TestRun(results, 0, True, output, 0.1)


def test_a_report_with_more_passes_than_pytest_printed_was_rewritten() -> None:
    forged = _run("3 failed, 1 passed in 0.04s\n", [Outcome.PASSED] * 4)
    assert "changed after pytest wrote it" in (report_disagrees(forged) or "")


def test_phases_merged_into_one_outcome_are_not_a_disagreement() -> None:
    # call passed + teardown error: pytest prints "1 passed, 1 error", the report keeps the error only
    assert report_disagrees(_run("1 passed, 1 error in 0.1s\n", [Outcome.ERROR])) is None
    assert report_disagrees(_run("1 passed, 1 xpassed in 0.1s\n", [Outcome.PASSED] * 2)) is None
    assert report_disagrees(_run("no summary at all\n", [Outcome.PASSED] * 2)) is None


def test_special_cased_test_inputs_are_flagged() -> None:
    inputs = assertion_inputs(TESTS)
    assert inputs == {"add(2, 3)": ("2", "3"), "parse('name = x')": ("'name = x'",)}
    flags = scan_diff(_diff("    if (a, b) == (2, 3):", "        return 5"), test_inputs=inputs)
    assert any("special-cases the inputs" in f and "add(2, 3)" in f for f in flags)
    assert any("parse('name = x')" in f for f in scan_diff(_diff('    if text == "name = x":'), test_inputs=inputs))


def test_plain_code_and_names_that_equal_a_test_string_raise_no_flag() -> None:
    inputs = assertion_inputs(TESTS)
    assert scan_diff(_diff("    return a + b", "    if b == 3:"), {"COMMENTCHARS"}, inputs) == []
    assert scan_diff(_diff("    return c in COMMENTCHARS"), {"COMMENTCHARS"}, inputs) == []
    assert scan_diff(_diff("    if (a, b) == (2, 3):", path="tests/test_calc.py"), test_inputs=inputs) == []


def test_changes_outside_the_tickets_area_are_flagged() -> None:
    from verification.verify import outside_area

    assert outside_area(["calc.py", "setup.py", "pkg/mod.py"], ("calc.py", "pkg/**")) == [
        "the diff touches files outside the ticket's area: setup.py"
    ]
    assert outside_area(["anything.py"], ()) == []
