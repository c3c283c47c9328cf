"""A branch of a repository that Fleet moves (the merge queue's target): a name no git command reads as an option or
a range, and its head on the repository as it is now."""

from __future__ import annotations

import re
from pathlib import Path

from system.credentials import shown_url
from system.git import GitError, git

BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class TargetError(Exception):
    """The target branch cannot be read now (the repository did not answer): the next try may."""


class NoSuchBranch(TargetError):
    """The target is no branch of the repository, or no name a branch can have: no later try will land there."""


def check_branch(name: str) -> str:
    """A branch name the queue may move: no option, no `..`, no ref outside refs/heads."""
    if not BRANCH.fullmatch(name) or ".." in name or name.endswith((".lock", "/")):
        raise NoSuchBranch(f"not a branch name the merge queue can use: {name!r}")
    return name


def remote_head(source: str, target: str, cwd: Path) -> str:
    """The commit the target branch of source is at now."""
    ref = f"refs/heads/{check_branch(target)}"
    try:
        listed = git("ls-remote", "--end-of-options", source, ref, cwd=cwd)
    except GitError as exc:
        raise TargetError(f"cannot read {ref} of {shown_url(source)}: {exc.stderr or exc}") from None
    for line in listed.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    raise NoSuchBranch(f"{shown_url(source)} has no branch {target}")
