"""The merge queue's git: read the target's head, build a speculative commit, move the target by compare-and-swap.

A build is a commit made with a private index (no worktree, no hooks, nothing of the diff run) and a fixed author,
committer and date, so the same parent, diff and entry always make the same commit. The target only ever moves
by compare-and-swap: `update-ref <new> <expected>` in a local repository, a push that is refused unless the
remote ref is still the expected commit elsewhere. Never a force push.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from db.mergeplan import Conflict
from system.branches import TargetError, check_branch
from system.credentials import shown_url
from system.git import GitError, git

APPLY_FAILED = re.compile(
    r"^error: (?:patch failed: (.+):\d+|(.+): (?:patch does not apply|does not exist in index|"
    r"already exists in index))$",
    re.M,
)
LANDING_REF = "refs/fleet/merge-queue/landing-{sha}"


@dataclass(frozen=True)
class Stamp:
    """Who and when a build commit says it was made: fixed per entry, so rebuilding gives the same commit."""

    when: datetime

    def env(self) -> dict[str, str]:
        date = f"@{int(self.when.timestamp())} +0000"
        return {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def build_commit(mirror: Path, parent: str, diff: str, message: str, stamp: Stamp) -> str | Conflict:
    """The commit of diff on parent, or the files that did not apply."""
    with tempfile.TemporaryDirectory(prefix="fleet-merge-index-") as tmp:
        index = Path(tmp) / "index"
        git("read-tree", parent, cwd=mirror, index_file=index)
        try:
            git("apply", "--cached", "--whitespace=nowarn", "-", cwd=mirror, input=diff, index_file=index)
        except GitError as exc:
            return Conflict(conflicting_files(exc.stderr))
        tree = git("write-tree", cwd=mirror, index_file=index).strip()
    return git("commit-tree", tree, "-p", parent, "-F", "-", cwd=mirror, input=message, env=stamp.env()).strip()


def conflicting_files(stderr: str) -> tuple[str, ...]:
    found = [a or b for a, b in APPLY_FAILED.findall(stderr)]
    return tuple(dict.fromkeys(found)) or ("(git could not say which file)",)


def land(source: str, mirror: Path, target: str, new: str, expected: str) -> bool:
    """Move target from expected to new; False when it is no longer at expected (someone else moved it).
    TargetError when the repository refuses the push otherwise (a protected branch, a hook, no write access)."""
    ref = f"refs/heads/{check_branch(target)}"
    if Path(source).is_dir():
        return _land_local(Path(source), mirror, ref, new, expected)
    try:
        git("push", f"--force-with-lease={ref}:{expected}", "--end-of-options", source, f"{new}:{ref}", cwd=mirror)
    except GitError as exc:
        if "(stale info)" in exc.stderr:
            return False  # the target moved
        raise TargetError(f"could not push {ref} to {shown_url(source)}: {said(exc)}") from None
    return True


def _land_local(repo: Path, mirror: Path, ref: str, new: str, expected: str) -> bool:
    """Send the objects under a ref of Fleet's own, then compare-and-swap the branch and drop that ref."""
    landing = LANDING_REF.format(sha=new)
    try:
        git("push", "--quiet", "--end-of-options", str(repo), f"{new}:{landing}", cwd=mirror)
    except GitError as exc:
        raise TargetError(f"could not send the build to {repo}: {said(exc)}") from None
    try:
        git("update-ref", ref, new, expected, cwd=repo)
    except GitError:
        return False  # "is at X but expected Y": the target moved
    finally:
        git("update-ref", "-d", landing, cwd=repo)
    return True


def said(exc: GitError) -> str:
    """What git said, on one line (an entry's reason, a log line)."""
    return " ".join((exc.stderr or str(exc)).split())


def is_ancestor(mirror: Path, commit: str, of: str) -> bool:
    try:
        git("merge-base", "--is-ancestor", commit, of, cwd=mirror)
    except GitError:
        return False
    return True


def commits_between(mirror: Path, base: str, head: str, files: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(sha, subject) of the commits after base up to head, newest first; only those touching files when given."""
    paths = ["--", *files] if files else []
    try:
        text = git("log", "--format=%H%x1f%s", f"{base}..{head}", *paths, cwd=mirror)
    except GitError:
        return []
    return [tuple(line.split("\x1f", 1)) for line in text.splitlines() if "\x1f" in line]  # type: ignore[misc]


def changed_files(mirror: Path, base: str, head: str) -> set[str]:
    """The files that differ between base and head (empty when either is unknown here)."""
    try:
        return set(git("diff", "--name-only", "--no-renames", base, head, "--", cwd=mirror).split("\n")) - {""}
    except GitError:
        return set()
