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
first. An id already registered for this very path is left from before: the caller unregisters it and makes the
slot again.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from system.files import remove_tree
from system.git import git
from workers.worktree_diff import explicit

LOCK_REASON = "a Fleet worktree pool slot"  # shown by `git worktree list --verbose`


class AlreadyRegistered(Exception):
    """The mirror already has a worktree registered under the slot's id."""


def make_worktree(mirror: Path, path: Path, sha: str) -> Path:
    """A new worktree of mirror at path (absent, as its parent is not), detached at sha and locked in git; returns
    its git dir. Raises AlreadyRegistered, or GitError (nothing of it left) when git cannot check sha out."""
    gitdir = _new_gitdir(mirror / "worktrees", path)
    try:
        (gitdir / "locked").write_text(LOCK_REASON)
        (gitdir / "commondir").write_text("../..\n")
        (gitdir / "HEAD").write_text(f"{sha}\n")
        path.mkdir()
        (gitdir / "gitdir").write_text(f"{path / '.git'}\n")
        (path / ".git").write_text(f"gitdir: {gitdir}\n")
        git(*explicit(path, gitdir), "read-tree", "-u", "--reset", sha, cwd=path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(path)
            remove_tree(gitdir)
        raise
    return gitdir


def _new_gitdir(worktrees: Path, path: Path) -> Path:
    worktrees.mkdir(exist_ok=True)
    named = worktrees / f"{path.parent.name}-{path.name}"
    for gitdir in (named, named.with_name(f"{named.name}-{uuid.uuid4().hex[:8]}")):
        try:
            gitdir.mkdir()
            return gitdir
        except FileExistsError:
            with contextlib.suppress(OSError):
                if (gitdir / "gitdir").read_text().strip() == str(path / ".git"):
                    raise AlreadyRegistered(f"{worktrees.parent} has a worktree registered at {path}") from None
    raise AlreadyRegistered(f"{worktrees.parent} has worktrees registered as {named.name} and its next name")
