"""The scripted demo agents against the shared sample repository, with its real tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from system.git import git
from workers.agents.scripted import SCRIPTS, main, scripted_command, write_sample_repo


def _pytest(repo: Path) -> str:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=60).stdout


def _agent(repo: Path, *script: str, prompt: str = "Fix the bug.") -> subprocess.CompletedProcess[str]:
    prompt_file = repo.parent / "prompt.md"
    prompt_file.write_text(prompt)
    env = {"PATH": "/usr/bin:/bin", "FLEET_PROMPT_FILE": str(prompt_file)}
    return subprocess.run(scripted_command(*script), cwd=repo, env=env, capture_output=True, text=True, timeout=30)


def test_sample_repo_has_three_failing_tests_and_one_passing(source: Path) -> None:
    assert git("branch", "--show-current", cwd=source).strip() == "main"
    assert git("status", "--porcelain", cwd=source) == ""
    summary = _pytest(source)
    for name in ("test_add", "test_mul", "test_div"):
        assert f"FAILED tests/test_calc.py::{name}" in summary
    assert "3 failed, 1 passed" in summary


def test_fix_add_makes_test_add_pass(source: Path) -> None:
    assert _agent(source, "fix-add").returncode == 0
    summary = _pytest(source)
    assert "2 failed, 2 passed" in summary and "FAILED tests/test_calc.py::test_add" not in summary


def test_needs_feedback_is_wrong_first_then_right(source: Path) -> None:
    first = _agent(source, "needs-feedback", prompt="test_mul FAILED: AssertionError")
    assert "no feedback" in first.stdout
    assert "return a * b - 1" in (source / "calc.py").read_text()
    git("checkout", "--", "calc.py", cwd=source)
    second = _agent(source, "needs-feedback", prompt="Fix mul.\n\n## Feedback\nFAILED test_mul - assert 13 == 12")
    assert "feedback found" in second.stdout
    text = (source / "calc.py").read_text()
    assert "return a * b\n" in text and "return a * b + 1" not in text


def test_never_edits_but_never_fixes(source: Path) -> None:
    assert _agent(source, "never", prompt="## Feedback\ntest_div failed").returncode == 0
    assert "return round(a / b)" in (source / "calc.py").read_text()
    assert "FAILED tests/test_calc.py::test_div" in _pytest(source)


def test_sleep_then_fix(source: Path) -> None:
    done = _agent(source, "sleep", "0.1")
    assert "sleeping 0.1s" in done.stdout
    assert "return a + b" in (source / "calc.py").read_text()


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["rm -rf /"]) == 2
    usage = capsys.readouterr().err
    assert all(name in usage for name in SCRIPTS)


def test_write_sample_repo_twice_in_different_places(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_sample_repo(tmp_path / name)
        assert (tmp_path / name / "tests" / "test_calc.py").is_file()
