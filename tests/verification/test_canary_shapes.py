"""Canaries after test files whose last test is parametrized, decorated or nested in a class: planted after them,
they catch a rewrite of the verdicts and stay out of an honest diff's verification."""

from __future__ import annotations

from pathlib import Path

import pytest
from canary_helpers import OTHER_TESTS, PATCH_RUNTEST, comparable, verify
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, TEST_CALC, Repo, make_repo

from db.lifecycle import Verdict
from verification.runner import TestRun
from verification.verify import VerifySpec, run_baseline

PARAMETRIZED = "\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_many(n):\n    assert n\n"
DECORATED = "\n\n@pytest.mark.filterwarnings('ignore')\ndef test_marked():\n    assert 1\n"
NESTED = "\n\nclass TestOuter:\n    class TestInner:\n        def test_deep(self):\n            assert 1\n"
SHAPES = {"test_many": PARAMETRIZED, "test_marked": DECORATED, "test_deep": NESTED}


def set_up(tmp_path: Path, spec: VerifySpec, last: str) -> tuple[Repo, TestRun]:
    """A repository whose every test file ends with a test of the shape last."""
    files = {
        "tests/test_calc.py": f"import pytest\n{TEST_CALC}{last}",
        "tests/test_other.py": f"import pytest\n\n\n{OTHER_TESTS}{last}",
    }
    repo = make_repo(tmp_path / "repo", files)
    return repo, run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")


def planted_after(checkout: Path, sibling: str) -> list[str]:
    """The tests appended to checkout's test files after the last one, named after it."""
    text = "".join(path.read_text() for path in sorted((checkout / "tests").glob("*.py")))
    return [name for name in text.split("def ")[1:] if name.startswith(f"{sibling}_")]


@pytest.mark.parametrize("sibling", SHAPES)
def test_code_that_makes_every_test_pass_is_gamed_after_any_last_test(tmp_path: Path, sibling: str) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec, SHAPES[sibling])
    result = verify(repo, baseline, spec, tmp_path / "checkout", CALC + PATCH_RUNTEST)
    assert result.verdict is Verdict.GAMED and "rewrites test results" in result.reasons[0], result.reasons
    assert planted_after(tmp_path / "checkout", sibling)


@pytest.mark.parametrize("sibling", SHAPES)
def test_an_honest_diff_sees_no_canary_after_any_last_test(tmp_path: Path, sibling: str) -> None:
    spec = VerifySpec(test_cmd=PYTEST.removesuffix(" -q"), timeout=60, env=FAST_ENV)
    repo, baseline = set_up(tmp_path, spec, SHAPES[sibling])
    result = verify(repo, baseline, spec, tmp_path / "checkout", FIXED_CALC)
    reference_spec = VerifySpec(test_cmd=f"true && {spec.test_cmd}", timeout=60, env=FAST_ENV, rerun_failures=False)
    reference = verify(repo, baseline, reference_spec, tmp_path / "reference", FIXED_CALC)
    assert len(planted_after(tmp_path / "checkout", sibling)) == 2
    assert comparable(result, tmp_path / "checkout") == comparable(reference, tmp_path / "reference")
