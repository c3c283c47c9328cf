"""The context pack: what it shows, and its size bound with what was cut said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.git import git
from verification.report import Outcome, TestResult
from verification.runner import TestRun
from workers.pipeline.context import PackInput, build_pack, read_instructions, targets_command, traceback_files

TARGET = "testing/test_iniconfig.py::test_iscommentline_true[;qwe]"
TRACE = (
    "line = ';qwe'\n\n    def test_iscommentline_true(line):\n"
    ">       assert iscommentline(line)\nE       AssertionError\n\n"
    "testing/test_iniconfig.py:301: AssertionError\n"
    'File "src/iniconfig/_parse.py", line 160, in iscommentline\n'
    "/usr/lib/python3/site-packages/_pytest/python.py:12: in call\n"
)
BASE = TestRun({TARGET: TestResult(TARGET, Outcome.FAILED, "AssertionError: assert False", TRACE)}, 1, True, "", 0.1)


def pack(limit: int = 24_000, instructions: str = "Run ruff before you finish.", **over: object) -> str:
    given = dict(
        prompt="# Ticket 1: iscommentline misses ';'\n\nLines starting with ';' are comments too.\n",
        test_cmd="python -m pytest -q",
        targets=[TARGET],
        baseline=BASE,
        area=["src/iniconfig/*"],
        instructions=("AGENTS.md", instructions),
        limit=limit,
    )
    return build_pack(PackInput(**given | over))  # type: ignore[arg-type]


def test_the_pack_shows_the_targets_how_they_fail_how_to_run_them_and_where_to_look() -> None:
    text = pack()
    assert text.startswith("# Ticket 1: iscommentline misses ';'")
    assert f"FAILED {TARGET}" in text and "AssertionError: assert False" in text
    assert "`python -m pytest -q 'testing/test_iniconfig.py::test_iscommentline_true[;qwe]'`" in text
    assert "src/iniconfig/_parse.py" in text and "src/iniconfig/*" in text
    assert "(AGENTS.md)" in text and "Run ruff before you finish." in text
    assert "[fleet]" not in text


def test_a_hidden_target_is_never_shown() -> None:
    hidden = "tests/test_hidden.py::test_h"
    text = pack(targets=[TARGET, hidden], known=[hidden], hidden=["tests/test_hidden.py"])
    assert TARGET in text and "test_hidden" not in text


def test_traceback_files_are_the_repositorys_own() -> None:
    assert traceback_files(BASE, [TARGET]) == ["testing/test_iniconfig.py", "src/iniconfig/_parse.py"]


def test_the_targets_command_quotes_each_id() -> None:
    assert targets_command("pytest", ["a.py::t[x y]"]) == "pytest 'a.py::t[x y]'"
    assert targets_command("pytest", []) == "pytest"


@pytest.mark.parametrize("limit", [2_000, 3_000, 5_000, 24_000])
def test_the_pack_stays_within_its_bound_and_says_what_was_cut(limit: int) -> None:
    text = pack(limit, instructions="Be careful. " * 2_000)
    assert len(text.encode()) <= limit
    assert text.startswith("# Ticket 1")
    last = text.rstrip().splitlines()[-1]
    assert last.startswith(f"[fleet] the context pack was cut to {limit} bytes: left out ")
    assert "the repository's instructions" in last
    assert sum("[fleet]" in line for line in text.splitlines()) == 1


def test_a_huge_ticket_is_clipped_last() -> None:
    text = pack(2_000, prompt="x" * 10_000)
    assert len(text.encode()) <= 2_000 and "the end of the ticket" in text


def test_without_a_baseline_the_pack_still_says_how_to_run_the_tests() -> None:
    text = pack(baseline=None, targets=[])
    assert "All: `python -m pytest -q` (also in $FLEET_TEST_CMD)" in text and "FAILED" not in text


def test_the_instructions_are_the_named_file_else_agents_md_else_claude_md(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "CLAUDE.md").write_text("claude\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "agents.txt").write_text("named\n")
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "AGENTS.md").write_text("agents\n")
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo).strip()
    assert read_instructions(repo, first, "") == ("CLAUDE.md", "claude\n")
    assert read_instructions(repo, second, "") == ("AGENTS.md", "agents\n")
    assert read_instructions(repo, second, "docs/agents.txt") == ("docs/agents.txt", "named\n")
    assert read_instructions(repo, second, "NOTES.md") is None
    assert read_instructions(repo, "f" * 40, "") is None  # a commit the mirror lacks
