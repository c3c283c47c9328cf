"""What `fleet tasks mine` reads of a repository's history: its commits in range, and a clear refusal when their
log is more than a worker reads of git's output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import FleetError
from orchestrator.mining import MineOptions, MineResult, Workspace, history, mutation_tasks
from system.git import GitError


def _repo(path: Path, commits: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for n in range(commits):
        (path / "file.txt").write_text(f"{n}\n")
        subprocess.run(["git", "add", "-A"], cwd=path, check=True)
        message = f"fix {n}\n\n" + "a long explanation\n" * 20
        subprocess.run(
            ["git", "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", message], cwd=path, check=True
        )


def test_history_lists_each_commit_after_the_first_with_its_parent_oldest_first(tmp_path: Path) -> None:
    _repo(tmp_path, 3)
    commits = history(tmp_path, "2000-01-01")
    assert [message.splitlines()[0] for _, _, message in commits] == ["fix 1", "fix 2"]
    assert commits[1][1] == commits[0][0]  # each names its parent


def test_a_history_over_what_is_read_is_refused_in_one_line_naming_the_way_out(tmp_path: Path) -> None:
    _repo(tmp_path, 3)
    with pytest.raises(FleetError, match="the history since 2000-01-01 is over 1,000 bytes.*shorter --since"):
        history(tmp_path, "2000-01-01", limit_bytes=1000)


def test_a_tracked_link_is_never_mutated_through(tmp_path: Path) -> None:
    """A link committed in the history (a merged agent's diff can add one) named a file of the host: the mutations
    were read from it, and the first one written back into it."""
    host = tmp_path / "host.py"
    host.write_text("def enabled():\n    return True\n")
    source = tmp_path / "source"
    _repo(source, 1)
    (source / "linked.py").symlink_to(host)
    (source / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    subprocess.run(["git", "add", "-A"], cwd=source, check=True)
    subprocess.run(
        ["git", "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "link"], cwd=source, check=True
    )
    (tmp_path / "work").mkdir()
    result = MineResult()
    options = MineOptions(source=source, repo="r", test_cmd="true", mutations=5, sandbox=False)
    try:
        mutation_tasks(Workspace(source, tmp_path / "work"), options, result)
        failed = None
    except GitError as exc:  # the mutated link has nothing to commit
        failed = exc
    assert host.read_text() == "def enabled():\n    return True\n"
    assert failed is None and result.tasks == []
