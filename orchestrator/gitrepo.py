"""Reading repositories in the short-lived control plane (CLI, web) through GitPython.

The long-running workers call git directly (system/git.py): GitPython's documentation warns that it leaks
resources in long-running processes. Here every Repo is closed as soon as the answer is read, and refs are
resolved by GitPython itself, never handed to a git command line where they could read as options.
"""

from __future__ import annotations

from pathlib import Path

from git import BadName, InvalidGitRepositoryError, NoSuchPathError, Repo
from gitdb.exc import BadObject


class NoCommit(Exception):
    """A ref that names no commit in the repository; carries the ref."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"not a commit: {ref!r}")


def repository_root(path: Path) -> Path | None:
    """The folder of the repository path is in (its work tree, or the git folder when bare), else None."""
    if not path.is_dir():
        return None
    try:
        with Repo(path, search_parent_directories=True) as repo:
            root = repo.git_dir if repo.bare else repo.working_tree_dir
            return Path(root).resolve() if root is not None else None
    except (InvalidGitRepositoryError, NoSuchPathError, NotADirectoryError):
        return None


def resolve_commit(path: Path, ref: str) -> str:
    """The full sha of the commit ref names in the repository at path; NoCommit when there is none."""
    if ref.startswith("-") or not ref.strip():
        raise NoCommit(ref)
    try:
        with Repo(path) as repo:
            return str(repo.commit(ref).hexsha)
    except (InvalidGitRepositoryError, NoSuchPathError, NotADirectoryError):
        raise NoCommit(ref) from None
    except (BadName, BadObject, ValueError, IndexError, TypeError):
        raise NoCommit(ref) from None


def committed_file(path: Path, ref: str, name: str) -> str | None:
    """The text of file `name` in the commit ref names, or None when the commit or the file is missing."""
    try:
        with Repo(path) as repo:
            blob = repo.commit(ref).tree / name
            data: bytes = blob.data_stream.read()
    except (InvalidGitRepositoryError, NoSuchPathError, BadName, BadObject, KeyError, ValueError):
        return None
    return data.decode("utf-8", errors="replace")


def remote_url(path: Path, name: str = "origin") -> str:
    """The URL of a folder's remote `name`, or "" when it has none."""
    try:
        with Repo(path) as repo:
            return str(repo.remote(name).url) if name in [r.name for r in repo.remotes] else ""
    except (InvalidGitRepositoryError, NoSuchPathError, NotADirectoryError, ValueError):
        return ""


def current_branch(path: Path) -> str | None:
    """The branch the repository at path has checked out (HEAD names it, bare or not), or None."""
    try:
        with Repo(path) as repo:
            if repo.head.is_detached:
                return None
            return str(repo.head.reference.name)
    except (InvalidGitRepositoryError, NoSuchPathError, NotADirectoryError, TypeError, ValueError):
        return None
