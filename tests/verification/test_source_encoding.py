"""Python files Python reads otherwise than the diff shows them: their coding declaration, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_helpers import FAST_ENV, PYTEST, make_repo

from db.lifecycle import Verdict
from verification.runner import TestRun
from verification.source_encoding import misread, python_text
from verification.verify import VerifySpec, run_baseline, verify_diff

# In UTF-7 `+AF8-` is `_` and `+-` is `+`: Python reads a fix that is right only when a test calls it, which a
# reviewer reading UTF-8 sees as gibberish, and the test-aware check could not even parse.
UTF7_CALC = (
    b"# -*- coding: utf-7 -*-\nimport sys\n\n\ndef add(a, b):\n"
    b'    return a +- b if sys.+AF8-getframe(1).f+AF8-code.co+AF8-name[:5] == "test+AF8-" else a - b\n\n\n'
    b"def mul(a, b):\n    return a * b\n"
)


def test_a_utf7_fix_that_reads_its_caller_is_gamed(tmp_path: Path) -> None:
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    repo = make_repo(tmp_path / "repo")
    baseline = TestRun.from_json(run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "br").to_json())
    result = verify_diff(repo.clone(tmp_path / "c"), repo.diff({"calc.py": UTF7_CALC}), spec, baseline, tmp_path / "r")
    assert result.verdict is Verdict.GAMED
    assert "calc.py:1: declares the source encoding utf-7" in result.reasons[0]
    assert any("calc.py:6: inspects the call stack (sys._getframe)" in reason for reason in result.reasons)


@pytest.mark.parametrize(
    "data,encoding",
    [
        (UTF7_CALC, "utf-7"),
        (b"# coding: latin-1\nX = 1\n", None),  # a legacy declaration over ASCII: the same text either way
        (b"\xef\xbb\xbfX = '\xc3\xa9'\n", None),  # UTF-8 with a byte order mark
        (b"X = '\xc3\xa9'\n", None),
        (b"# coding: no-such-codec\nX = 1\n", None),  # Python would not import it
    ],
)
def test_a_file_is_misread_only_when_python_reads_other_text(data: bytes, encoding: str | None) -> None:
    assert misread(data) == encoding


def test_python_text_is_what_python_reads() -> None:
    assert "sys._getframe(1)" in python_text(UTF7_CALC)
