"""The guards around a run: protected paths and their restore, pytest config detection, flags, sandbox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from verify_helpers import FIXED_CALC, TEST_CALC, Repo, sh_git

from system.globs import matches
from system.sandbox import TESTS_MISSING, bwrap_missing, unsandboxed_tests_warning
from verification.confined import PLAIN_PYTEST
from verification.flags import assertion_literals, scan_diff
from verification.patch import apply_patch
from verification.protect import DEFAULT_PROTECT, protected_changes, pytest_config, restore

PYPROJECT = '[project]\nname = "calc"\nversion = "1"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n'


@pytest.mark.parametrize(
    "path,protected",
    [
        ("tests/test_calc.py", True),
        ("tests/data/input.json", True),
        ("src/pkg/tests/helpers.py", True),
        ("test_top.py", True),
        ("pkg/calc_test.py", True),
        ("conftest.py", True),
        ("pkg/sub/conftest.py", True),
        ("pytest.ini", True),
        ("sub/tox.ini", True),
        (".github/workflows/ci.yml", True),
        ("sitecustomize.py", True),
        ("Makefile", True),
        ("web/jest.config.js", True),
        (".mocharc.yml", True),
        ("phpunit.xml.dist", True),
        (".fleet.toml", True),
        (".coveragerc", True),
        ("sub/.coveragerc", True),
        ("calc.py", False),
        ("package.json", False),
        ("pkg/contest.py", False),
        ("src/testing_utils.py", False),
        ("docs/tests.md", False),
    ],
)
def test_default_patterns(path: str, protected: bool) -> None:
    assert any(matches(path, pattern) for pattern in DEFAULT_PROTECT) is protected


def test_double_star_spans_directories() -> None:
    assert matches("a/b/c/conftest.py", "**/conftest.py") and matches("conftest.py", "**/conftest.py")
    assert matches("src/x/y.py", "src/**") and not matches("srcx/y.py", "src/**")
    assert matches("lib/a.py", "lib/*.py") and not matches("lib/a/b.py", "lib/*.py")


def test_pyproject_is_protected_only_for_its_pytest_and_coverage_tables(repo: Repo) -> None:
    repo.write({"pyproject.toml": PYPROJECT})
    repo.commit("pyproject")
    deps = PYPROJECT.replace('version = "1"', 'version = "1"\ndependencies = ["attrs"]')
    apply_patch(repo.path, repo.diff({"pyproject.toml": deps}))
    assert protected_changes(repo.path, ["pyproject.toml"], DEFAULT_PROTECT) == []
    sh_git("reset", "-q", "--hard", cwd=repo.path)
    apply_patch(repo.path, repo.diff({"pyproject.toml": PYPROJECT.replace('"-q"', '"-p evil"')}))
    assert protected_changes(repo.path, ["pyproject.toml"], DEFAULT_PROTECT) == ["pyproject.toml"]
    sh_git("reset", "-q", "--hard", cwd=repo.path)
    lowered = PYPROJECT + "\n[tool.coverage.report]\nfail_under = 0\n"  # pytest-cov failed the run under 90
    repo.write({"pyproject.toml": PYPROJECT + "\n[tool.coverage.report]\nfail_under = 90\n"})
    repo.commit("coverage")
    apply_patch(repo.path, repo.diff({"pyproject.toml": lowered}))
    assert protected_changes(repo.path, ["pyproject.toml"], DEFAULT_PROTECT) == ["pyproject.toml"]


def test_restore_puts_back_edits_deletions_and_renames_and_removes_new_files(repo: Repo) -> None:
    diff = repo.diff({"tests/test_calc.py": None, "tests/test_moved.py": TEST_CALC, "conftest.py": "x = 1\n"})
    changed = apply_patch(repo.path, diff)
    paths = protected_changes(repo.path, changed, DEFAULT_PROTECT)
    assert restore(repo.path, paths) == ["conftest.py", "tests/test_calc.py", "tests/test_moved.py"]
    assert sh_git("status", "--porcelain", cwd=repo.path) == ""


def test_restore_keeps_the_rest_of_the_diff(repo: Repo) -> None:
    changed = apply_patch(repo.path, repo.diff({"calc.py": FIXED_CALC, "tests/test_calc.py": "pass\n"}))
    restore(repo.path, protected_changes(repo.path, changed, DEFAULT_PROTECT))
    assert (repo.path / "calc.py").read_text() == FIXED_CALC
    assert (repo.path / "tests/test_calc.py").read_text() == TEST_CALC


@pytest.mark.parametrize(
    "files,expected",
    [
        ({}, None),
        ({"setup.cfg": "[metadata]\nname = calc\n"}, None),
        ({"setup.cfg": "[tool:pytest]\naddopts = -q\n"}, "setup.cfg"),
        ({"pyproject.toml": PYPROJECT, "tox.ini": "[pytest]\n"}, "pyproject.toml"),
        ({"pyproject.toml": '[project]\nname = "x"\n', "tox.ini": "[pytest]\n"}, "tox.ini"),
        ({"pytest.ini": "", "pyproject.toml": PYPROJECT}, "pytest.ini"),
    ],
)
def test_pytest_config_follows_pytest_precedence(repo: Repo, files: dict[str, str], expected: str | None) -> None:
    if files:
        repo.write(files)
        repo.commit("config")
    assert pytest_config(repo.path) == expected


def _ini_then_pyproject(repo: Repo) -> tuple[str, str]:
    """Two commits: one configuring pytest in pytest.ini, the next in pyproject.toml instead."""
    repo.write({"pytest.ini": "[pytest]\n"})
    repo.commit("pytest.ini")
    with_ini = sh_git("rev-parse", "HEAD", cwd=repo.path).strip()
    repo.write({"pytest.ini": None, "pyproject.toml": PYPROJECT})
    repo.commit("pyproject instead")
    return with_ini, sh_git("rev-parse", "HEAD", cwd=repo.path).strip()


def test_pytest_config_of_a_detached_checkout_is_its_commits_however_often_it_is_asked(
    repo: Repo, tmp_path: Path
) -> None:
    """Pooled checkouts sit on a detached commit, and each commit's answer is kept: a checkout moved to another
    commit, or a second checkout, must still get the answer of the commit it is on."""
    with_ini, with_pyproject = _ini_then_pyproject(repo)
    first, second = tmp_path / "slot-0", tmp_path / "slot-1"
    sh_git("worktree", "add", "-q", "--detach", str(first), with_ini, cwd=repo.path)
    sh_git("worktree", "add", "-q", "--detach", str(second), with_pyproject, cwd=repo.path)
    for _ in range(2):
        assert pytest_config(first) == "pytest.ini"
        assert pytest_config(second) == "pyproject.toml"
    sh_git("checkout", "-q", "--detach", with_pyproject, cwd=first)
    assert pytest_config(first) == "pyproject.toml"
    (second / "pyproject.toml").unlink()  # the work tree's files are not HEAD's: they are never read
    assert pytest_config(second) == "pyproject.toml"
    sh_git("checkout", "-q", "--detach", with_ini, cwd=second)
    assert pytest_config(second) == "pytest.ini"


def test_a_checkout_whose_git_pointer_git_reads_otherwise_cannot_give_another_commit_its_pytest_config(
    repo: Repo, tmp_path: Path
) -> None:
    """A run with no sandbox may rewrite a slot's .git file. Git trims only a line's end from it: with trailing
    spaces it names another folder, whose HEAD may name another commit than the folder without them. Whatever the
    slot's files say, the answer kept for a commit must be that commit's."""
    with_ini, with_pyproject = _ini_then_pyproject(repo)
    slot = tmp_path / "slot-0"
    sh_git("worktree", "add", "-q", "--detach", str(slot), with_ini, cwd=repo.path)
    real = Path(sh_git("rev-parse", "--absolute-git-dir", cwd=slot).strip())
    for folder, head in ((tmp_path / "decoy", with_pyproject), (tmp_path / "decoy  ", with_ini)):
        shutil.copytree(real, folder)
        (folder / "HEAD").write_text(head + "\n")
        (folder / "commondir").write_text(str(repo.path / ".git") + "\n")
    (slot / ".git").write_text(f"gitdir: {tmp_path / 'decoy'}  \n")  # git reads "decoy  ", at with_ini
    assert sh_git("rev-parse", "HEAD", cwd=slot).strip() == with_ini
    assert pytest_config(slot) == "pytest.ini"
    other = tmp_path / "slot-1"
    sh_git("worktree", "add", "-q", "--detach", str(other), with_pyproject, cwd=repo.path)
    assert pytest_config(other) == "pyproject.toml"


def test_flags_on_added_lines() -> None:
    diff = "\n".join(
        [
            "diff --git a/calc.py b/calc.py",
            "--- a/calc.py",
            "+++ b/calc.py",
            "@@ -1 +1,12 @@",
            "+import sys, os, pytest",
            '+if "pytest" in sys.modules:',
            "+    os._exit(0)",
            "+class Anything:",
            "+    def __eq__(self, other):",
            "+        return True",
            "+def add(a, b):",
            '+    return "expected-total"',
            " unchanged",
            "-removed = os._exit(1)",
        ]
    )
    flags = "\n".join(scan_diff(diff, {"expected-total", "never-used"}))
    for needle in ("pytest is loaded", "os._exit", "__eq__", "imports pytest outside the tests", "expected-total"):
        assert needle in flags
    assert "never-used" not in flags


@pytest.mark.parametrize(
    "lines",
    [
        ["+class Anything:", "+    __eq__ = lambda self, other: True"],
        ["+class Anything:", "+    def __eq__(self, other): return True"],
        ["+class Anything(int):", "+    def __ne__(self, other):", "+        return 0"],
    ],
)
def test_an_always_equal_object_is_flagged_however_it_is_written(lines: list[str]) -> None:
    diff = "\n".join(["diff --git a/calc.py b/calc.py", "--- a/calc.py", "+++ b/calc.py", "@@ -1 +1,3 @@", *lines])
    assert any("__eq__/__ne__ that returns a constant" in flag for flag in scan_diff(diff))


def test_an_honest_comparison_is_not_flagged() -> None:
    body = ["+    def __eq__(self, other):", "+        return isinstance(other, P) and self.x == other.x"]
    diff = "\n".join(["diff --git a/p.py b/p.py", "--- a/p.py", "+++ b/p.py", "@@ -1 +1,3 @@", "+class P:", *body])
    assert scan_diff(diff) == []


def test_a_plain_fix_raises_no_flag(repo: Repo) -> None:
    assert scan_diff(repo.diff({"calc.py": FIXED_CALC}), {"12345"}) == []


def test_assertion_literals() -> None:
    source = 'def test_x():\n    assert f(1) == "hello world"\n    assert g() == 31337\n    x = "not-asserted"\n'
    assert assertion_literals(source) == {"hello world", "31337"}
    assert assertion_literals("def broken(:\n") == set()


def test_a_missing_sandbox_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bwrap_missing() is not None and unsandboxed_tests_warning() == TESTS_MISSING


@pytest.mark.parametrize(
    "command,plain",
    [("python -m pytest -q", True), ("uv run pytest tests", True), ("pytest -q && coverage report", False)],
)
def test_failures_are_rerun_only_for_a_plain_pytest_command(command: str, plain: bool) -> None:
    assert bool(PLAIN_PYTEST.match(command)) is plain
