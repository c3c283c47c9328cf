"""A pool slot's worktree made from git's documented layout, with one git call to check it out.

`git worktree add` costs about 10 ms of the machine's CPU per worktree: it starts two more git processes (an
update-ref and a reset) and reads every other worktree's metadata. A worker's first wave makes one per slot, and
those starts are the first wave's ramp: every slot that starts late ends each of its agents late. Written here are
the files gitrepository-layout(5) names for a linked worktree: in the mirror's `worktrees/<id>/` its `locked`,
`commondir`, `HEAD` and `gitdir`, and the worktree's own `.git`; then `git read-tree -u --reset` checks the commit
out into the worktree and its index (about 2.6 ms in all). `locked` is written first, as git does, so that a
`git worktree prune` never takes a worktree still being made; the slot stays locked in git for its whole life
(workers/worktree.py).

The id is the pool's folder and the slot's name, and a random suffix when another path of the same names took it
first. A registration that already names the path (a slot deleted by hand) is refused, as git refuses it: the
caller unregisters it and makes the slot again, under the creation lock that no creation shares; there, too, the
entries a killed worker left half made (`locked` and no `gitdir`, which no prune takes) are removed.

Where the layout written here would not be the one git makes, `git worktree add` makes the worktree: a mirror
whose refs are not plain files (reftable keeps a worktree's HEAD in a store of its own) or a commit id not given
in full.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import uuid
from pathlib import Path

from system.files import remove_tree
from system.git import GitError, git
from workers.worktree_diff import explicit

LOCK_REASON = "a Fleet worktree pool slot"  # shown by `git worktree list --verbose`
FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class AlreadyRegistered(Exception):
    """The mirror already has a worktree registered at the slot's path."""


def make_worktree(mirror: Path, path: Path, sha: str) -> Path:
    """A new worktree of mirror at path (absent, as its parent is not), detached at commit sha and locked in git;
    returns its git dir. Raises AlreadyRegistered, or GitError (nothing of it left) when git cannot check sha out."""
    mirror, path = mirror.resolve(), path.resolve()
    if not (FULL_ID.fullmatch(sha) and _refs_are_files(mirror)):
        return add_by_git(mirror, path, sha)
    gitdir = _new_gitdir(mirror / "worktrees", path)
    try:
        (gitdir / "locked").write_text(LOCK_REASON)  # first: no prune takes it meanwhile
        (gitdir / "commondir").write_text("../..\n")
        (gitdir / "HEAD").write_text(f"{sha}\n")
        path.mkdir()
        (gitdir / "gitdir").write_text(f"{path / '.git'}\n")  # last: until then other git commands skip it
        (path / ".git").write_text(f"gitdir: {gitdir}\n")
        git(*explicit(path, gitdir), "read-tree", "-u", "--reset", sha, cwd=path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(path)
        with contextlib.suppress(OSError):
            remove_tree(gitdir)
        raise
    return gitdir


def remove_unfinished(mirror: Path) -> None:
    """Remove the worktree entries of mirror a killed worker left half made: locked by Fleet, with no `gitdir`. The
    caller holds the creation lock no creation shares."""
    worktrees = mirror / "worktrees"
    with contextlib.suppress(FileNotFoundError), os.scandir(worktrees) as entries:
        names = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    for name in names:
        with contextlib.suppress(OSError):
            unfinished = not (worktrees / name / "gitdir").exists()
            if unfinished and (worktrees / name / "locked").read_text().strip() == LOCK_REASON:
                remove_tree(worktrees / name)


@functools.cache
def _refs_are_files(mirror: Path) -> bool:
    config = ("config", "--file", str(mirror / "config"), "--default", "files", "extensions.refStorage")
    return git(*config, cwd=mirror).strip() == "files"


def add_by_git(mirror: Path, path: Path, sha: str) -> Path:
    """The same worktree made by `git worktree add` (what the layout written here stands for); returns its git dir."""
    try:
        git("worktree", "add", "--lock", f"--reason={LOCK_REASON}", "--detach", "--quiet", str(path), sha, cwd=mirror)
    except GitError:
        with contextlib.suppress(OSError):
            remove_tree(path)
        raise
    return Path((path / ".git").read_text().removeprefix("gitdir: ").strip())  # just made: no agent has been in it


def _new_gitdir(worktrees: Path, path: Path) -> Path:
    worktrees.mkdir(exist_ok=True)
    if _registered(worktrees, path):
        raise AlreadyRegistered(f"{worktrees.parent} has a worktree registered at {path}")
    named = worktrees / f"{path.parent.name}-{path.name}"
    for gitdir in (named, named.with_name(f"{named.name}-{uuid.uuid4().hex[:8]}")):
        with contextlib.suppress(FileExistsError):
            gitdir.mkdir()
            return gitdir
    raise AlreadyRegistered(f"{worktrees.parent} has worktrees registered as {named.name} and its next name")


def _registered(worktrees: Path, path: Path) -> bool:
    """True when an entry of worktrees names path. Only entries whose id could be the path's are read: git's own
    begins with the path's name (then a number when taken), Fleet's with its folder's and the path's names."""
    ids, named = (path.name, f"{path.parent.name}-{path.name}"), str(path / ".git")
    with os.scandir(worktrees) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.name.startswith(ids) and Path(entry.path, "gitdir").read_text().strip() == named:
                    return True
    return False
