"""Files pytest collects tests from are test files, whatever the protect patterns say: real checkouts, real runs."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from verify_helpers import FAST_ENV, FIXED_CALC, PYTEST, Repo, make_repo

from db.lifecycle import Verdict
from verification.protect import collected_file_globs
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

ADD = "tests/test_calc.py::test_add"
SPEC = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
# A doctest that rebinds the buggy function's code for the test session only: calc.py stays wrong.
REBIND = ">>> import calc\n>>> calc.add.__code__ = (lambda a, b: a + b).__code__\n"


def _verify(
    tmp_path: Path, base_files: dict[str, str], diff_files: dict[str, str], spec: VerifySpec = SPEC
) -> VerificationResult:
    repo = make_repo(tmp_path / "repo", base_files)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    baseline = TestRun.from_json(baseline.to_json())
    return verify_diff(repo.clone(tmp_path / "c"), repo.diff(diff_files), spec, baseline, tmp_path / "reports")


@pytest.mark.parametrize("name", ["test.txt", "docs/test_usage.txt"])
def test_a_doctest_file_the_diff_adds_is_reverted_so_rebinding_the_code_under_test_is_gamed(
    tmp_path: Path, name: str
) -> None:
    result = _verify(tmp_path, {}, {name: REBIND})
    assert result.verdict is Verdict.GAMED and result.reverted == [name]
    assert result.fail_to_pass == [] and ADD in result.feedback


def test_a_doctest_file_the_diffs_build_script_writes_is_reverted(tmp_path: Path) -> None:
    spec = replace(SPEC, setup_cmd=f"{sys.executable} build.py")
    hidden = REBIND.replace(">>>", "@@@")  # no doctest in the build script's own text
    build = f"open('test.txt', 'w').write({hidden!r}.replace('@@@', '>>>'))\n"
    result = _verify(tmp_path, {"build.py": "\n"}, {"build.py": build}, spec)
    assert result.verdict is Verdict.GAMED and result.reverted == ["test.txt"]


def test_the_doctest_glob_and_python_files_the_base_configures_are_test_files(tmp_path: Path) -> None:
    ini = "[pytest]\npython_files = check_*.py test_*.py\naddopts = --doctest-glob='*.md'\n"
    result = _verify(tmp_path, {"pytest.ini": ini}, {"USAGE.md": REBIND, "check_calc.py": "X = 1\n"})
    assert result.verdict is Verdict.GAMED and result.reverted == ["USAGE.md", "check_calc.py"]


def test_a_doctest_in_a_code_module_that_rebinds_the_code_under_test_is_gamed(tmp_path: Path) -> None:
    """With --doctest-modules every module's docstrings are tests: code, read as code, whatever file holds them."""
    helpers = f'"""Helpers.\n\n{REBIND}"""\n'
    result = _verify(tmp_path, {"pytest.ini": "[pytest]\naddopts = --doctest-modules\n"}, {"aaa.py": helpers})
    assert result.verdict is Verdict.GAMED and "aaa.py:1: runs a doctest that rebinds" in result.reasons[0]


def test_an_honest_fix_beside_a_text_file_pytest_does_not_collect_passes(tmp_path: Path) -> None:
    result = _verify(tmp_path, {}, {"calc.py": FIXED_CALC, "notes.txt": REBIND, "docs/usage.md": REBIND})
    assert result.verdict is Verdict.PASSED and result.reverted == []


@pytest.mark.parametrize(
    "files,command,globs",
    [
        ({}, PYTEST, ("test_*.py", "*_test.py", "test*.txt", "tests/**")),  # tests/ holds a test file: all of it
        ({}, f"{PYTEST} --doctest-glob '*.rst'", ("test_*.py", "*_test.py", "*.rst", "tests/**")),
        (
            {"pyproject.toml": '[tool.pytest.ini_options]\npython_files = ["t_*.py"]\naddopts = "--doctest-glob=*.md"'},
            PYTEST,
            ("t_*.py", "*.md"),
        ),
        ({"setup.cfg": "[tool:pytest]\npython_files = spec_*.py\n"}, PYTEST, ("spec_*.py", "test*.txt")),
        ({"pytest.ini": "[pytest]\npython_files = *.py check_*.py\n"}, PYTEST, ("check_*.py", "test*.txt")),
        (
            {"pytest.ini": "[pytest]\npython_files = check_*.py\naddopts = extra/more.py\ntestpaths = t.py\n"},
            f"{PYTEST} ./checks.py sub/x.py::test_a -k add",
            ("check_*.py", "test*.txt", "checks.py", "extra/more.py", "sub/x.py", "t.py"),
        ),
        ({}, f"{PYTEST} --doctest-modules calc.py", ("test_*.py", "*_test.py", "test*.txt", "tests/**")),
    ],
)
def test_collected_file_globs_follow_the_base_configuration_and_the_command(
    repo: Repo, files: dict[str, str], command: str, globs: tuple[str, ...]
) -> None:
    if files:
        repo.write(files)
        repo.commit("config")
    assert collected_file_globs(repo.path, command) == globs
