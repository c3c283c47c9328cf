"""An unsandboxed agent's git dir: its own for the run, the mirror's pointer put back afterwards."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from system.git import git
from workers.agent_git import base_pack, pointed_at, private_gitdir
from workers.worktree import WorktreePool


def test_git_config_written_in_the_worktree_stays_in_the_attempts_git_dir(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    config = (mirror / "config").read_bytes()
    with pool.lease(base_sha) as wt:
        pointer = (wt.path / ".git").read_bytes()
        gitdir = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / "attempt")
        with pointed_at(wt.path, gitdir):
            git("config", "core.fsmonitor", "touch /tmp/never", cwd=wt.path)
            git("config", "core.hooksPath", str(tmp_path), cwd=wt.path)
            assert git("rev-parse", "--absolute-git-dir", "--git-common-dir", cwd=wt.path).split() == [str(gitdir)] * 2
            assert git("status", "--porcelain", cwd=wt.path) == ""  # the index is the slot's: a clean start
            calc = wt.path / "calc.py"
            calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
            git("commit", "--quiet", "-am", "the agent commits", cwd=wt.path)
        assert (wt.path / ".git").read_bytes() == pointer
        assert "+    return a + b" in wt.diff()  # Fleet diffs the files, committed or not, from the mirror's side
        assert "fsmonitor" in (gitdir / "config").read_text()
    assert (mirror / "config").read_bytes() == config
    assert git("rev-list", "--all", cwd=mirror).split() == [base_sha], "the agent's commit stayed out of the mirror"


def test_whatever_the_agent_left_at_dot_git_is_replaced(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        pointer = (wt.path / ".git").read_bytes()
        for n, leave in enumerate(("folder", "link", "file")):
            gitdir = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / f"attempt-{n}")
            with pointed_at(wt.path, gitdir):
                dot_git = wt.path / ".git"
                dot_git.unlink()
                if leave == "folder":
                    git("init", "--quiet", cwd=wt.path)
                elif leave == "link":
                    dot_git.symlink_to(mirror)
                else:
                    dot_git.write_text(f"gitdir: {wt.gitdir}\n")
            assert (wt.path / ".git").read_bytes() == pointer
            assert wt.diff() == ""
    with pool.lease(base_sha) as wt:
        assert wt.path == pool.root / "slot-0" and (wt.path / ".git").read_bytes() == pointer  # reused, not remade


def test_a_slot_left_pointing_at_an_attempts_git_dir_is_made_again(
    tmp_path: Path, pool: WorktreePool, base_sha: str
) -> None:
    """A worker killed during an unsandboxed run leaves `.git` naming the attempt's git dir: never reused as is."""
    with pool.lease(base_sha) as wt:
        gitdir = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / "attempt")
        (wt.path / ".git").write_text(f"gitdir: {gitdir}\n")
        (wt.path / "left.txt").write_text("x\n")
    with pool.lease(base_sha) as again:
        assert again.path == wt.path
        assert git("rev-parse", "--git-common-dir", cwd=again.path).strip() != str(gitdir)
        assert not (again.path / "left.txt").exists()


def test_a_leased_slot_survives_a_prune_while_its_dot_git_is_gone(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    """`git worktree prune` drops a worktree whose `.git` is missing: an agent (or the pointer's swap) can do that."""
    other = WorktreePool(tmp_path / "worktrees" / "repo-1" / "verify", mirror, size=1, wait_seconds=0.5)
    with pool.lease(base_sha) as wt:
        gitdir = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / "attempt")
        with pointed_at(wt.path, gitdir):
            (wt.path / ".git").unlink()
            with other.lease(base_sha):  # a new slot of the same mirror: its creation prunes the mirror's worktrees
                pass
            other.prune(keep=0)  # and so does removing one
        assert wt.gitdir.is_dir()
        assert wt.diff() == ""


def test_slots_in_use_survive_prunes_racing_with_the_pointer_swap(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    """Agents' `.git` swapped back and forth while another pool of the mirror makes and removes slots."""
    agents = WorktreePool(tmp_path / "agent", mirror, size=2, wait_seconds=5)
    verify = WorktreePool(tmp_path / "verify", mirror, size=1, wait_seconds=5)
    done = threading.Event()
    errors: list[BaseException] = []

    def swap(n: int) -> None:
        try:
            with agents.lease(base_sha) as wt:
                gitdir = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / f"attempt-{n}")
                while not done.is_set():
                    with pointed_at(wt.path, gitdir):
                        pass
                wt.diff()
        except BaseException as exc:
            errors.append(exc)

    swappers = [threading.Thread(target=swap, args=(n,)) for n in range(2)]
    for thread in swappers:
        thread.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with verify.lease(base_sha):
            pass
        verify.prune(keep=0)
    done.set()
    for thread in swappers:
        thread.join()
    assert errors == []


def test_attempts_at_one_base_copy_one_pack_made_once_and_a_gc_in_one_touches_no_other(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        first = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / "one")
        shared = base_pack(mirror, base_sha)
        made = {p.name: p.stat().st_ino for p in shared.iterdir()}
        second = private_gitdir(wt.mirror, wt.gitdir, base_sha, tmp_path / "two")
        assert {p.name: p.stat().st_ino for p in shared.iterdir()} == made  # not packed again
        git(f"--git-dir={first}", "gc", "--quiet", "--prune=now", cwd=tmp_path)  # the agent rewrites its objects
        reachable = {line.split()[0] for line in git("rev-list", "--objects", base_sha, cwd=mirror).splitlines()}
        for gitdir in (first, second):
            listing = git(f"--git-dir={gitdir}", "cat-file", "--batch-all-objects", "--batch-check", cwd=tmp_path)
            assert {line.split()[0] for line in listing.splitlines()} == reachable  # the base's objects, no other
            assert git(f"--git-dir={gitdir}", "log", "--format=%H", cwd=tmp_path).split() == [base_sha]
        assert {p.name: p.stat().st_ino for p in shared.iterdir()} == made
