"""Canaries in a command that names test ids and files: planted only in the files it collects whole, never added
to the command (the code under test reads it in sys.argv)."""

from __future__ import annotations

from pathlib import Path

import pytest
from canary_helpers import ADD, PATCH_REPORT_OUTCOME, PATCH_RUNTEST, comparable, planted, set_up, verify
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, TEST_CALC

from db.lifecycle import Verdict
from verification.verify import VerifySpec

MIXED = f"{PYTEST} {ADD} tests/test_other.py"  # one test of test_calc.py, and test_other.py whole


@pytest.mark.parametrize("attack", [PATCH_RUNTEST, PATCH_REPORT_OUTCOME])
def test_code_that_makes_every_test_pass_is_gamed_when_the_command_names_test_ids(tmp_path: Path, attack: str) -> None:
    spec = VerifySpec(test_cmd=MIXED, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", CALC + attack)
    assert result.verdict is Verdict.GAMED and "rewrites test results" in result.reasons[0], result.reasons
    assert (tmp_path / "checkout/tests/test_calc.py").read_text() == TEST_CALC  # named by id: no canary there


@pytest.mark.parametrize("code", [FIXED_CALC, CALC + "\nVERSION = 2\n"], ids=["fixed", "unfixed"])
def test_an_honest_diff_sees_no_canary_when_the_command_names_test_ids(tmp_path: Path, code: str) -> None:
    spec = VerifySpec(test_cmd=MIXED, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", code)
    reference_spec = VerifySpec(test_cmd=f"true && {MIXED}", timeout=60, env=FAST_ENV, rerun_failures=False)
    reference = verify(repo, baseline, reference_spec, tmp_path / "reference", code)
    assert planted(tmp_path / "checkout")
    assert comparable(result, tmp_path / "checkout") == comparable(reference, tmp_path / "reference")


def test_a_command_of_test_ids_alone_gets_no_canary(tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd=f"{PYTEST} {ADD} tests/test_other.py::test_one", timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", FIXED_CALC)
    assert result.verdict is Verdict.PASSED and not planted(tmp_path / "checkout"), result.reasons
