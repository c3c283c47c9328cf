"""The code under test runs beside the hidden tests and can read them: the feedback never carries them back."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_helpers import CALC, FAST_ENV, PYTEST, make_repo

from system.sandbox import bwrap_missing
from verification.digest import WITHHELD
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

ADD = "tests/test_calc.py::test_add"
SECRET_TEST = "from calc import add\n\n\ndef test_secret_large():\n    assert add(40, 2) == 42\n"
# A "fix" that fails the visible target with the text of every test file it finds as its message.
DUMP = 'import glob\n    raise AssertionError(repr({p: open(p).read() for p in glob.glob("tests/*.py")}))'
QUOTE = 'raise AssertionError(open("tests/test_secret_calc.py").read().splitlines()[-1])'


def _verify(tmp_path: Path, calc: str) -> VerificationResult:
    hidden = tmp_path / "hidden"
    (hidden / "tests").mkdir(parents=True)
    (hidden / "tests" / "test_secret_calc.py").write_text(SECRET_TEST)
    repo = make_repo(tmp_path / "repo")
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, hidden_tests=hidden, targets=(ADD,))
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    return verify_diff(repo.clone(tmp_path / "c"), repo.diff({"calc.py": calc}), spec, baseline, tmp_path / "r")


@pytest.mark.parametrize("leak", [DUMP, QUOTE], ids=["the whole file, named", "one line, unnamed"])
def test_a_visible_failure_that_quotes_a_hidden_test_is_withheld(tmp_path: Path, leak: str) -> None:
    result = _verify(tmp_path, CALC.replace("return a - b", leak))
    assert "add(40, 2) == 42" not in result.feedback and "secret" not in result.feedback
    assert f"{ADD}: {WITHHELD}" in result.feedback


@pytest.mark.skipif(bwrap_missing() is not None, reason="unsandboxed, the output beside hidden tests is withheld")
def test_a_visible_failure_of_its_own_is_shown_beside_hidden_tests(tmp_path: Path) -> None:
    result = _verify(tmp_path, CALC.replace("a - b", "a * b"))
    assert "assert 6 == 5" in result.feedback and WITHHELD not in result.feedback
