"""A slot's worktree written from git's layout: git sees what `git worktree add --lock --detach` would have made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from system.git import GitError, git
from workers.worktree_make import LOCK_REASON, AlreadyRegistered, make_worktree, remove_unfinished


def _listed(mirror: Path) -> dict[str, list[str]]:
    """`git worktree list --porcelain` of the mirror: each linked worktree's path and its other lines."""
    entries = git("worktree", "list", "--porcelain", cwd=mirror.resolve()).strip().split("\n\n")[1:]
    return {lines[0].removeprefix("worktree "): lines[1:] for lines in (entry.splitlines() for entry in entries)}


def test_git_lists_the_worktree_detached_at_the_commit_and_locked_and_its_checkout_is_clean(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    path = tmp_path / "pool" / "slot-0"
    path.parent.mkdir()
    gitdir = make_worktree(mirror.resolve(), path, base_sha)
    assert _listed(mirror) == {str(path): [f"HEAD {base_sha}", "detached", f"locked {LOCK_REASON}"]}
    assert git("rev-parse", "--path-format=absolute", "--git-dir", cwd=path).strip() == str(gitdir)
    assert git("status", "--porcelain", "--ignored", cwd=path) == ""
    assert (path / "calc.py").read_text() == git("show", f"{base_sha}:calc.py", cwd=mirror)
    git("worktree", "prune", cwd=mirror)
    assert str(path) in _listed(mirror)  # locked: a prune by another slot's creation never takes it


def test_slots_of_two_pools_of_the_same_names_on_one_mirror_each_get_their_own(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    paths = [tmp_path / parent / "agent" / "slot-0" for parent in ("a", "b")]
    gitdirs = []
    for path in paths:
        path.parent.mkdir(parents=True)
        gitdirs.append(make_worktree(mirror.resolve(), path, base_sha))
    assert gitdirs[0] != gitdirs[1]
    assert sorted(_listed(mirror)) == sorted(map(str, paths))


@pytest.mark.parametrize("made_by", ["fleet", "git worktree add"])
def test_a_path_registered_before_is_refused_for_the_caller_to_unregister(
    tmp_path: Path, mirror: Path, base_sha: str, made_by: str
) -> None:
    path = (tmp_path / "pool" / "slot-0").resolve()
    path.parent.mkdir()
    if made_by == "fleet":
        make_worktree(mirror, path, base_sha)
    else:  # an earlier Fleet's slot, registered under git's own name for it
        git("worktree", "add", "--lock", "--detach", "--quiet", str(path), base_sha, cwd=mirror)
    shutil.rmtree(path)  # deleted by hand: git still has it registered
    with pytest.raises(AlreadyRegistered, match="registered at"):
        make_worktree(mirror, path, base_sha)


def test_entries_a_killed_worker_left_half_made_are_removed_and_no_others(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    path = tmp_path / "pool" / "slot-0"
    path.parent.mkdir()
    made = make_worktree(mirror, path, base_sha)
    worktrees = mirror / "worktrees"
    (worktrees / "pool-slot-1").mkdir()  # killed between writing `locked` and `gitdir`
    (worktrees / "pool-slot-1" / "locked").write_text(LOCK_REASON)
    (worktrees / "someone-else").mkdir()  # not Fleet's
    (worktrees / "someone-else" / "locked").write_text("initializing")
    remove_unfinished(mirror)
    assert sorted(entry.name for entry in worktrees.iterdir()) == [made.name, "someone-else"]
    assert git("status", "--porcelain", cwd=path) == ""


def test_a_commit_id_not_given_in_full_is_checked_out_by_git_worktree_add(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    path = tmp_path / "pool" / "slot-0"
    path.parent.mkdir()
    make_worktree(mirror, path, base_sha[:12])
    assert _listed(mirror) == {str(path.resolve()): [f"HEAD {base_sha}", "detached", f"locked {LOCK_REASON}"]}


def test_a_commit_the_mirror_lacks_leaves_nothing_behind(tmp_path: Path, mirror: Path) -> None:
    path = tmp_path / "pool" / "slot-0"
    path.parent.mkdir()
    with pytest.raises(GitError):
        make_worktree(mirror.resolve(), path, "0123456789abcdef0123456789abcdef01234567")
    assert not path.exists()
    assert list((mirror / "worktrees").iterdir()) == []
