"""Canaries end to end: code that rewrites pytest's verdicts from inside the run is gamed; honest diffs see none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from canary_helpers import (
    ADD,
    DURATION,
    PATCH_CALL_AND_REPORT,
    PATCH_REPORT_OUTCOME,
    PATCH_RUNTEST,
    comparable,
    planted,
    set_up,
    verify,
)
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, make_repo

from db.lifecycle import Verdict
from verification.canary import HIDDEN, Canary, tripped
from verification.canary_output import scrub_output
from verification.report import Outcome, TestResult
from verification.verify import VerifySpec, run_baseline


@pytest.mark.parametrize("attack", [PATCH_RUNTEST, PATCH_CALL_AND_REPORT, PATCH_REPORT_OUTCOME])
def test_code_that_makes_every_test_pass_is_gamed_naming_the_cause(tmp_path: Path, attack: str) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", CALC + attack)
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0] == (
        "a test Fleet planted to fail was reported passing: the code under test rewrites test results"
    )
    assert result.reasons[0] in result.feedback
    assert not any(name in result.feedback for name in planted(tmp_path / "checkout"))


@pytest.mark.parametrize("options", ["-q", "-v", ""])
@pytest.mark.parametrize("code", [FIXED_CALC, FIXED_CALC.replace("a * b", "a ** b")], ids=["fixed", "broken"])
def test_an_honest_diff_sees_no_canary_in_its_verdict_counts_feedback_or_output(
    tmp_path: Path, options: str, code: str
) -> None:
    command = f"{PYTEST.removesuffix(' -q')} {options}"
    spec = VerifySpec(test_cmd=command, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", code)
    # A compound command is no single pytest run: it gets no canary, and is what the verification was before.
    reference_spec = VerifySpec(test_cmd=f"true && {command}", timeout=60, env=FAST_ENV, rerun_failures=False)
    reference = verify(repo, baseline, reference_spec, tmp_path / "reference", code)
    names = planted(tmp_path / "checkout")
    assert names and not planted(tmp_path / "reference")
    assert comparable(result, tmp_path / "checkout") == comparable(reference, tmp_path / "reference")
    shown = json.dumps([result.to_json(), result.run.to_json() if result.run else None])
    assert not any(name in shown for name in names)
    assert DURATION.sub("", result.output).replace(str(tmp_path / "checkout"), "") == DURATION.sub(
        "", reference.output
    ).replace(str(tmp_path / "reference"), "")


@pytest.mark.parametrize("command", [f'{PYTEST} -k "add or mul"', f'{PYTEST} -k "not mul"', f"{PYTEST} -p xdist -n 2"])
def test_canaries_run_and_stay_silent_with_a_keyword_a_target_or_workers(tmp_path: Path, command: str) -> None:
    spec = VerifySpec(test_cmd=command, timeout=60, env=FAST_ENV, targets=(ADD,))
    repo, baseline = set_up(tmp_path, spec)
    honest = verify(repo, baseline, spec, tmp_path / "honest", FIXED_CALC)
    assert honest.verdict is Verdict.PASSED, honest.reasons
    assert honest.fail_to_pass == [ADD] and honest.broken == [] and planted(tmp_path / "honest")
    wrong = verify(repo, baseline, spec, tmp_path / "wrong", CALC.replace("a - b", "a * b"))
    assert wrong.verdict is Verdict.FAILED and wrong.still_failing == [ADD], wrong.reasons
    gamed = verify(repo, baseline, spec, tmp_path / "gamed", CALC + PATCH_RUNTEST)
    assert gamed.verdict is Verdict.GAMED and "rewrites test results" in gamed.reasons[0]


def test_each_verification_plants_canaries_of_its_own(tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    first = verify(repo, baseline, spec, tmp_path / "first", FIXED_CALC)
    second = verify(repo, baseline, spec, tmp_path / "second", FIXED_CALC)
    assert first.verdict is second.verdict is Verdict.PASSED
    assert planted(tmp_path / "first") and planted(tmp_path / "second")
    assert planted(tmp_path / "first") != planted(tmp_path / "second")


CUSTOM_INI = "[pytest]\ntestpaths = checks\npython_files = check_*.py\npython_functions = *_works\n"
CUSTOM_CHECKS = (
    "from calc import add, mul\n\n\ndef add_works():\n    assert add(2, 3) == 5\n\n\n"
    "def mul_works():\n    assert mul(2, 3) == 6\n"
)


def test_a_repository_with_its_own_test_layout_gets_canaries_its_pytest_collects(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"pytest.ini": CUSTOM_INI, "checks/check_calc.py": CUSTOM_CHECKS})
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    assert baseline.failures == ["checks/check_calc.py::add_works"]
    honest = verify(repo, baseline, spec, tmp_path / "honest", FIXED_CALC)
    assert honest.verdict is Verdict.PASSED and honest.pass_to_pass == 1, honest.reasons
    grown = (tmp_path / "honest/checks/check_calc.py").read_text().removeprefix(CUSTOM_CHECKS)
    assert re.fullmatch(r"\n\ndef mul_works_\w+_works\(\):\n(    .*\n)+", grown), grown
    gamed = verify(repo, baseline, spec, tmp_path / "gamed", CALC + PATCH_CALL_AND_REPORT)
    assert gamed.verdict is Verdict.GAMED and "rewrites test results" in gamed.reasons[0], gamed.reasons


UNITTEST_CALC = (
    "import unittest\n\nfrom calc import add, mul\n\n\nclass TestCalc(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
    "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
)


def test_a_repository_of_unittest_classes_gets_canaries_after_them(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"tests/test_calc.py": UNITTEST_CALC})
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    assert baseline.failures == ["tests/test_calc.py::TestCalc::test_add"]
    honest = verify(repo, baseline, spec, tmp_path / "honest", FIXED_CALC)
    assert honest.verdict is Verdict.PASSED and honest.pass_to_pass == 1, honest.reasons
    grown = (tmp_path / "honest/tests/test_calc.py").read_text().removeprefix(UNITTEST_CALC)
    assert re.fullmatch(r"\n\ndef test_mul_\w+\(\):\n(    .*\n)+", grown), grown
    gamed = verify(repo, baseline, spec, tmp_path / "gamed", CALC + PATCH_REPORT_OUTCOME)
    assert gamed.verdict is Verdict.GAMED and "rewrites test results" in gamed.reasons[0], gamed.reasons


def test_a_canary_a_keyword_leaves_out_beside_a_class_it_selects_is_no_rewrite(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"tests/test_calc.py": UNITTEST_CALC})
    spec = VerifySpec(test_cmd=f"{PYTEST} -k TestCalc", timeout=60, env=FAST_ENV)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    honest = verify(repo, baseline, spec, tmp_path / "honest", FIXED_CALC)
    assert honest.verdict is Verdict.PASSED and honest.pass_to_pass == 1, honest.reasons
    assert (tmp_path / "honest/tests/test_calc.py").read_text() != UNITTEST_CALC  # planted, and deselected


CANARY = Canary("tests/test_calc.py::test_mul_empty", "tests/test_calc.py::test_mul")


@pytest.mark.parametrize(
    "canary,sibling,reason",
    [
        (Outcome.FAILED, Outcome.PASSED, None),
        (Outcome.ERROR, Outcome.PASSED, None),
        (Outcome.PASSED, None, "a test Fleet planted to fail was reported passing"),
        (Outcome.SKIPPED, Outcome.PASSED, "a test Fleet planted to fail was reported skipped"),
        (Outcome.XFAILED, Outcome.PASSED, "a test Fleet planted to fail was reported xfailed"),
        (None, Outcome.PASSED, HIDDEN),
        (None, Outcome.FAILED, None),  # the run stopped, or the file was not collected: nothing says it was hidden
        (Outcome.SKIPPED, Outcome.SKIPPED, None),  # the whole file was skipped
        (None, None, None),
    ],
)
def test_a_canary_that_did_not_fail_is_judged_by_the_test_beside_it(
    canary: Outcome | None, sibling: Outcome | None, reason: str | None
) -> None:
    outcomes = {CANARY.test_id: canary, CANARY.sibling: sibling}
    results = {t: TestResult(t, outcome) for t, outcome in outcomes.items() if outcome is not None}
    found = tripped((CANARY,), results)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


RERUN_ORDER = ["tests/test_a.py::test_x", "tests/test_a.py::test_y", "tests/test_a.py::test_y_empty"]
RERUNS = """\
collected 3 items

tests/test_a.py .RRFRRF                                                  [100%]

=================================== FAILURES ===================================
____________________________________ test_y ____________________________________
E   assert 1 == 2
_________________________________ test_y_empty _________________________________
E   assert 3 == 4
=========================== short test summary info ============================
FAILED tests/test_a.py::test_y - assert 1 == 2
FAILED tests/test_a.py::test_y_empty - assert 3 == 4
===================== 2 failed, 1 passed, 4 rerun in 0.10s =====================
"""
WITHOUT_CANARY = """\
collected 2 items

tests/test_a.py .RRF                                                     [100%]

=================================== FAILURES ===================================
____________________________________ test_y ____________________________________
E   assert 1 == 2
=========================== short test summary info ============================
FAILED tests/test_a.py::test_y - assert 1 == 2
===================== 1 failed, 1 passed, 2 rerun in 0.10s =====================
"""


def test_the_output_reads_as_the_run_of_the_repositorys_own_tests_reruns_included() -> None:
    assert scrub_output(RERUNS, RERUN_ORDER, {"tests/test_a.py::test_y_empty": "failed"}) == WITHOUT_CANARY


TEARDOWN_CONFTEST = """\
import pytest

from calc import sub


@pytest.fixture(scope="module", autouse=True)
def subtraction_still_works():
    yield
    assert sub(3, 1) == 2
"""


def test_a_fixture_teardown_the_diff_broke_is_not_hidden_on_the_canary_it_was_reported_on(tmp_path: Path) -> None:
    calc = CALC + "\n\ndef sub(a, b):\n    return a - b\n"
    repo = make_repo(tmp_path / "repo", {"calc.py": calc, "conftest.py": TEARDOWN_CONFTEST})
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    broken = FIXED_CALC + "\n\ndef sub(a, b):\n    return a + b\n"  # add fixed, sub broken: only the teardown sees it
    result = verify(repo, baseline, spec, tmp_path / "checkout", broken)
    assert planted(tmp_path / "checkout")
    assert result.verdict is Verdict.FAILED, result.reasons
