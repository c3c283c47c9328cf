"""Canaries in runs that stop at their first failures (`-x`, `--maxfail`): planted to run after every other test,
so a rewrite of the verdicts is caught and an honest diff's run stops, reads and is judged as without them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from canary_helpers import DURATION, PATCH_CALL_AND_REPORT, PATCH_RUNTEST, comparable, planted, set_up, verify
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST

from db.lifecycle import Verdict
from verification.verify import VerificationResult, VerifySpec

LATE_TESTS = {"tests/test_zlate.py": "def test_late():\n    assert 3\n"}  # collected after the base's files


@pytest.mark.parametrize("options", ["-x", "--maxfail=2"])
@pytest.mark.parametrize("attack", [PATCH_RUNTEST, PATCH_CALL_AND_REPORT])
def test_code_that_makes_every_test_pass_in_a_run_that_stops_early_is_gamed(
    tmp_path: Path, options: str, attack: str
) -> None:
    spec = VerifySpec(test_cmd=f"{PYTEST} {options}", timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec)
    assert ("tests/test_other.py::test_two" in baseline.results) is (options != "-x")  # -x: stopped at test_add
    result = verify(repo, baseline, spec, tmp_path / "checkout", CALC + attack)
    assert result.verdict is Verdict.GAMED, result.reasons
    assert result.reasons[0] == (
        "a test Fleet planted to fail was reported passing: the code under test rewrites test results"
    )
    assert planted(tmp_path / "checkout") == [n for n in planted(tmp_path / "checkout") if n.startswith("test_two_")]


def shown(result: VerificationResult, checkout: Path) -> tuple[str, str]:
    return comparable(result, checkout), DURATION.sub("", result.output).replace(str(checkout), "")


@pytest.mark.parametrize("options", ["-x", "--maxfail=2", "-x -v", "-q --maxfail=1"])
@pytest.mark.parametrize(
    "code,files",
    [(FIXED_CALC, {}), (FIXED_CALC.replace("a * b", "a ** b"), {}), (FIXED_CALC, LATE_TESTS)],
    ids=["fixed", "broken", "tests-added-after"],
)
def test_an_honest_diff_in_a_run_that_stops_early_sees_no_canary(
    tmp_path: Path, options: str, code: str, files: dict[str, str]
) -> None:
    command = f"{PYTEST.removesuffix(' -q')} {options}"
    spec = VerifySpec(test_cmd=command, timeout=60, env=FAST_ENV, allow_test_edits=True)  # the diff's tests run
    repo, baseline = set_up(tmp_path, spec)
    result = verify(repo, baseline, spec, tmp_path / "checkout", code, files)
    reference_spec = replace(spec, test_cmd=f"true && {command}", rerun_failures=False)
    reference = verify(repo, baseline, reference_spec, tmp_path / "reference", code, files)
    assert [name for name in planted(tmp_path / "checkout") if name != "test_late"] != [] or files
    assert result.run is not None and ("tests/test_zlate.py::test_late" in result.run.results) is bool(files)
    assert "stopping after" not in result.output or "stopping after" in reference.output
    assert shown(result, tmp_path / "checkout") == shown(reference, tmp_path / "reference")
    assert result.verdict is reference.verdict
