"""The worker's git in a checkout that sandboxed code wrote, held to its memory and time bounds there.

git 2.39 reads the `.gitignore` of every folder `status` walks whole into memory: a sparse one of a few GiB, which
costs no disk, would hold a slot's git for seconds a gigabyte and take as much of the host's memory. Real git."""

from __future__ import annotations

import os
import resource
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


def _largest_child_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def test_a_huge_gitignore_ends_the_diff_at_once_naming_why(pool: WorktreePool, base_sha: str) -> None:
    with pool.lease(base_sha) as worktree:
        (worktree.path / "calc.py").write_text("edited\n")
        _grown(worktree.path / ".gitignore")  # tracked: edited
        _grown(worktree.path / "build" / ".gitignore")  # untracked, in a folder status walks
        started = time.monotonic()
        with pytest.raises(DiffNotKept, match=NAMED) as caught:
            worktree.diff(5 * 2**20)
        assert time.monotonic() - started < QUICKLY
        assert str(worktree.path) not in str(caught.value)
    assert _largest_child_bytes() < CHECKOUT_ADDRESS_SPACE  # no git of the worker's took the file's size


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
