"""Python files Python reads otherwise than the diff shows them: their coding declaration, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, make_repo

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
        (b"# coding: latin-1\n# \xa9 1998 Jos\xe9\nNAME = 'Jos\xe9'\n", None),  # accents in a comment and a string
        (b"# coding: cp1252\nPRICE = '\x80 5'  # euros\n", None),
        (b"# coding: latin-1\nimport \xbas\n", "iso-8859-1"),  # `import os` to Python, `import ?s` shown
        (b"# coding: shift_jis\nX = '\x95\\'\nY = 1\n", "shift_jis"),  # a trail byte shown as a backslash
        # A lone CR ends a line for Python, not for the tokenize module: after `# one` the UTF-8 `ª = 2` is code,
        # which Python reads as the name `Âª` (`Âa`) where the diff shows `ª` (`a`): RESULT is 1, not 2.
        (b"# coding: latin-1\na = 1\n# one\r\xc2\xaa = 2\rRESULT = a\n", "iso-8859-1"),
        # An f-string is one token to the tokenize module of Python 3.11, its braces' names too: Python reads `Âª`.
        (b"# coding: latin-1\na = 1\nRESULT = f'{\xc2\xaa}'\n", "iso-8859-1"),
        (b"# coding: latin-1\nX = f'Caf\xe9 {1:>4}'\n", None),  # its accents in the f-string's text
    ],
)
def test_a_file_is_misread_only_when_python_reads_other_text(data: bytes, encoding: str | None) -> None:
    assert misread(data) == encoding


def test_a_fix_to_an_old_latin1_file_is_verified(tmp_path: Path) -> None:
    # A file written in latin-1 long ago, accents in its strings and comments: an honest fix was refused as
    # "declares the source encoding", the diff showing its accents as replacement characters.
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    header = b"# -*- coding: latin-1 -*-\n# Rechenmodul, gepr\xfcft von Jos\xe9\n" + b"#\n" * 6
    repo = make_repo(tmp_path / "repo")
    repo.write({"calc.py": header + CALC.encode() + b"AUTHOR = 'M\xfcller'\n"})
    repo.commit("latin-1")
    baseline = TestRun.from_json(run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "br").to_json())
    fixed = header + FIXED_CALC.encode() + b"AUTHOR = 'M\xfcller'\n"
    result = verify_diff(repo.clone(tmp_path / "c"), repo.diff({"calc.py": fixed}), spec, baseline, tmp_path / "r")
    assert result.verdict is Verdict.PASSED, result.reasons


def test_python_text_is_what_python_reads() -> None:
    assert "sys._getframe(1)" in python_text(UTF7_CALC)
