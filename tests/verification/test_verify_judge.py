"""judge(): the verdict rules on hand-built runs (the end-to-end tests use real pytest runs)."""

from __future__ import annotations

from db.lifecycle import Verdict
from verification.judge import NO_REPORT, NOTHING_TO_VERIFY, judge
from verification.report import Outcome, TestResult
from verification.runner import TestRun

ADD = "tests/test_calc.py::test_add"
MUL = "tests/test_calc.py::test_mul"
P, F, S, E, X = Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED, Outcome.ERROR, Outcome.XFAILED


def tr(exit_code: int | None = None, report: bool = True, **outcomes: Outcome) -> TestRun:
    results = {_id(k): TestResult(_id(k), o, "assert -1 == 5" if o is F else "") for k, o in outcomes.items()}
    if exit_code is None:
        exit_code = 1 if any(r.bad for r in results.values()) else 0
    return TestRun(results, exit_code, report, "", 0.1, expects_report=report)


def _id(key: str) -> str:
    return {"add": ADD, "mul": MUL}.get(key, f"tests/test_calc.py::{key}")


BASE = tr(add=F, mul=P)


def test_fix_passes_with_fail_to_pass() -> None:
    j = judge(BASE, tr(add=P, mul=P))
    assert j.verdict is Verdict.PASSED, j.reasons
    assert j.fail_to_pass == [ADD] and j.pass_to_pass == 1 and not j.broken


def test_still_failing_target_fails_with_its_message() -> None:
    j = judge(BASE, tr(add=F, mul=P))
    assert j.verdict is Verdict.FAILED
    assert j.still_failing == [ADD]
    assert any("assert -1 == 5" in r for r in j.reasons)


def test_breaking_a_passing_test_fails_naming_it() -> None:
    j = judge(BASE, tr(add=P, mul=F))
    assert j.verdict is Verdict.FAILED and j.broken == [MUL]
    assert any(MUL in r for r in j.reasons)


def test_skipped_xfailed_or_missing_counts_as_broken() -> None:
    for candidate in (tr(add=P, mul=S), tr(add=P, mul=X), tr(add=P)):
        assert judge(BASE, candidate).broken == [MUL]


def test_named_target_missing_from_results_fails() -> None:
    j = judge(BASE, tr(add=P, mul=P), targets=["tests/test_calc.py::test_new"])
    assert j.verdict is Verdict.FAILED
    assert "tests/test_calc.py::test_new was not found in the test results, at the base or with the diff" in j.reasons


def test_a_named_target_that_exists_nowhere_names_the_closest_test() -> None:
    """A mistyped --target: the reviewer and the agent read which test was probably meant, after one attempt."""
    j = judge(BASE, tr(add=P, mul=P), targets=["tests/test_calc.py::test_ad"])
    assert j.reasons == [
        "tests/test_calc.py::test_ad was not found in the test results, at the base or with the diff "
        f"(did you mean {ADD}?)"
    ]
    path_typo = judge(BASE, tr(add=P, mul=P), targets=["tests/test_clac.py::test_add"])
    assert path_typo.reasons[0].endswith(f"(did you mean {ADD}?)")
    far = judge(BASE, tr(add=P, mul=P), targets=["tests/test_parser.py::test_unicode_escapes"])
    assert "did you mean" not in far.reasons[0]


def test_a_test_the_diff_removed_is_not_a_typo() -> None:
    j = judge(BASE, tr(mul=P), targets=[ADD])
    assert j.reasons == [f"{ADD} was not found in the test results"]


def test_new_failing_test_is_not_a_pass() -> None:
    j = judge(BASE, tr(add=P, mul=P, test_extra=F))
    assert j.verdict is Verdict.FAILED and "tests/test_calc.py::test_extra" in j.still_failing


def test_exit_code_must_agree_with_the_report() -> None:
    assert judge(BASE, tr(0, add=F, mul=P)).verdict is Verdict.FAILED
    j = judge(BASE, tr(5, add=P, mul=P))
    assert j.verdict is Verdict.FAILED and "exited 5" in j.reasons[0]


def test_exit_zero_without_report_after_a_reported_baseline_is_gamed() -> None:
    j = judge(BASE, tr(0, report=False))
    assert j.verdict is Verdict.GAMED and "os._exit(0)" in j.reasons[0]


def test_crash_without_report_is_failed() -> None:
    assert judge(BASE, tr(3, report=False)).verdict is Verdict.FAILED


def test_pytest_without_any_report_is_an_error() -> None:
    base = TestRun({}, 1, False, "", 0.1, expects_report=True)
    j = judge(base, TestRun({}, 0, False, "", 0.1, expects_report=True))
    assert j.verdict is Verdict.ERROR and j.reasons == [NO_REPORT]


def test_no_report_at_all_falls_back_to_exit_codes_weakly() -> None:
    j = judge(TestRun({}, 1, False, "", 0.1), TestRun({}, 0, False, "", 0.1))
    assert j.verdict is Verdict.PASSED and j.weak and "weaker" in j.reasons[0]
    assert judge(TestRun({}, 1, False, "", 0.1), TestRun({}, 2, False, "", 0.1)).verdict is Verdict.FAILED


def test_nothing_to_verify() -> None:
    j = judge(tr(mul=P), tr(mul=P))
    assert j.verdict is Verdict.FAILED and j.reasons == [NOTHING_TO_VERIFY]


def test_new_passing_tests_count_when_nothing_failed_at_base() -> None:
    assert judge(tr(mul=P), tr(mul=P, test_feature=P)).verdict is Verdict.PASSED


def test_collection_error_target_is_resolved_by_its_tests() -> None:
    base = TestRun({"tests/test_new.py": TestResult("tests/test_new.py", E)}, 1, True, "", 0.1)
    now = TestRun({"tests/test_new.py::test_a": TestResult("tests/test_new.py::test_a", P)}, 0, True, "", 0.1)
    j = judge(base, now)
    assert j.verdict is Verdict.PASSED and j.fail_to_pass == ["tests/test_new.py"]


def test_errors_win() -> None:
    bad = TestRun({}, None, False, "", 1.0, timed_out=True, error="test command timed out after 1s")
    assert judge(BASE, bad).verdict is Verdict.ERROR
    assert judge(bad, tr(add=P, mul=P)).verdict is Verdict.ERROR


def test_a_broken_test_that_passes_on_rerun_is_flaky_not_broken() -> None:
    j = judge(BASE, tr(add=P, mul=F), rerun=tr(mul=P))
    assert j.verdict is Verdict.PASSED and j.flaky == [MUL] and j.flags


def test_an_exit_code_the_report_does_not_explain_is_not_trusted_and_says_what_pytest_meant() -> None:
    collected_none = judge(BASE, tr(exit_code=5, mul=P))
    assert collected_none.verdict is Verdict.FAILED
    assert "exited 5 (pytest's code for no tests collected) although the report has no failure" in " ".join(
        collected_none.reasons
    )
    assert "pytest's code" not in " ".join(judge(BASE, tr(exit_code=3, add=P, mul=P)).reasons)


def test_a_class_target_passes_when_every_test_of_the_class_at_the_base_passes() -> None:
    base = tr(**{"TestK::test_a": F, "TestK::test_b": P})
    j = judge(base, tr(**{"TestK::test_a": P, "TestK::test_b": P}), targets=["tests/test_calc.py::TestK"])
    assert j.verdict is Verdict.PASSED and j.fail_to_pass == ["tests/test_calc.py::TestK"]


def test_a_class_target_one_of_whose_tests_vanished_names_it() -> None:
    base = tr(**{"TestK::test_a": F, "TestK::test_b": F})
    j = judge(base, tr(**{"TestK::test_b": P}), targets=["tests/test_calc.py::TestK"])
    assert j.verdict is Verdict.FAILED
    assert j.reasons == ["tests/test_calc.py::TestK::test_a was not found in the test results"]
