"""The worker's git in a checkout that sandboxed code wrote, held to its memory and time bounds there.

git 2.39 reads the `.gitignore` of every folder `status` walks whole into memory: a sparse one of a few GiB, which
costs no disk, would hold a slot's git for seconds a gigabyte and take as much of the host's memory. Real git."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from system.git import CHECKOUT_ADDRESS_SPACE, GitError, GitOverBounds, checkout_git
from verification.envcache import untracked
from workers.worktree import WorktreePool
from workers.worktree_diff import DiffNotKept

HUGE = 2 * 2**30  # past the checkout's address space, sparse: no disk
QUICKLY = 5.0  # git reading it whole would take about 3 s a gigabyte, a GiB of memory each
NAMED = r"more than the 1,024 MiB .* a \.gitignore, is too large"


def _grown(path: Path) -> None:
    """What sandboxed code leaves with `truncate -s 2G path` (where no file size limit stops it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.truncate(HUGE)


TAKING_THE_DIFF = """
import json, resource, sys, time
from pathlib import Path
from workers.worktree import WorktreePool
from workers.worktree_diff import DiffNotKept

pool = WorktreePool(Path(sys.argv[1]), Path(sys.argv[2]), size=2, wait_seconds=0.5)
with pool.lease(sys.argv[3]) as worktree:
    (worktree.path / "calc.py").write_text("edited\\n")
    for gitignore in (worktree.path / ".gitignore", worktree.path / "build" / ".gitignore"):
        gitignore.parent.mkdir(parents=True, exist_ok=True)
        with open(gitignore, "ab") as handle:
            handle.truncate(int(sys.argv[4]))
    started = time.monotonic()
    try:
        worktree.diff(5 * 2**20)
        refusal = None
    except DiffNotKept as refused:
        refusal = str(refused)
    seconds = time.monotonic() - started
largest_child_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps([refusal, seconds, str(worktree.path), largest_child_bytes]))
"""


def test_a_huge_gitignore_ends_the_diff_at_once_naming_why(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    """In a Python of its own, whose only children are the worker's git: the largest of them is theirs alone.
    The tracked `.gitignore` is edited; the untracked one lies in a folder status walks."""
    taken = subprocess.run(
        [sys.executable, "-c", TAKING_THE_DIFF, str(tmp_path / "slots"), str(mirror), base_sha, str(HUGE)],
        capture_output=True,
        text=True,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    refusal, seconds, slot, largest_child_bytes = json.loads(taken.stdout)
    assert refusal and re.search(NAMED, refusal)
    assert seconds < QUICKLY
    assert slot not in refusal
    assert largest_child_bytes < CHECKOUT_ADDRESS_SPACE  # no git of the worker's took the file's size


def test_the_slot_a_huge_gitignore_was_left_in_serves_the_next_lease(pool: WorktreePool, base_sha: str) -> None:
    with pool.lease(base_sha) as worktree:
        _grown(worktree.path / ".gitignore")
        _grown(worktree.path / "build" / ".gitignore")
        with pytest.raises(DiffNotKept):
            worktree.diff()
    started = time.monotonic()
    with pool.lease(base_sha) as again:
        assert again.path == worktree.path
        assert (again.path / ".gitignore").stat().st_size < 100 and not (again.path / "build").exists()
        (again.path / "calc.py").write_text("edited\n")
        assert "+edited" in again.diff()
    assert time.monotonic() - started < QUICKLY


def test_verification_reads_a_checkout_with_a_huge_gitignore_within_bounds(tmp_path: Path, source: Path) -> None:
    _grown(source / "build" / ".gitignore")  # as a diff's build script or a test run leaves it
    started = time.monotonic()
    with pytest.raises(GitOverBounds, match=NAMED):
        untracked(source)
    assert time.monotonic() - started < QUICKLY


def test_git_held_up_in_a_checkout_is_a_git_error_naming_its_time(source: Path) -> None:
    """A git error, which a slot's release and the diff's taking handle, never an exception that escapes them."""
    os.mkfifo(source / "build.gitignore")
    (source / "build.gitignore").rename(source / ".gitignore")  # a fifo where git reads: it waits for a writer
    started = time.monotonic()
    with pytest.raises(GitError, match="git was stopped after 0.5s in a checkout sandboxed code wrote"):
        checkout_git("status", "--porcelain", cwd=source, timeout=0.5)
    assert time.monotonic() - started < QUICKLY
