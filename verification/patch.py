"""Apply an agent's text diff to a clean checkout, refusing what cannot be reviewed as text."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from system.git import GitError, checkout_git

# Compiled or import-hook files run code without showing it in a text diff.
_GENERATED = re.compile(
    r"(^|/)(__pycache__|\.pytest_cache)(/|$)|\.(pyc|pyo|pyd|so|dylib|dll|pth|egg-link)$", re.IGNORECASE
)
_HEADER = re.compile(r"^diff --git (?:\"?a/)?(.*?)\"? (?:\"?b/)?(.*?)\"?$")
_BINARY = re.compile(r"^(GIT binary patch|Binary files .* differ)$")
_RENAME_FROM = re.compile(r"^rename from (.+)$", re.MULTILINE)
_SPECIAL_MODE = re.compile(r"^(new file mode|new mode|index \S+) (120000|160000)$")
APPLY = ("--index", "--whitespace=nowarn")


class PatchRefused(Exception):
    """The diff was not applied; reason says why, in words fit for the agent's next prompt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def apply_patch(checkout: Path, diff: str) -> list[str]:
    """check_patch and apply_checked in one git process: the diff is applied (to index and work tree), then
    judged, so a refused diff leaves the checkout changed: for a checkout that is cleaned before its next use."""
    diff = _readable(diff)
    try:
        numstat = checkout_git("apply", "--numstat", "-z", *APPLY, "--apply", "-", cwd=checkout, input=diff)
    except GitError as exc:  # refused for what it holds, as check_patch would; else it does not apply here
        check_patch(checkout, diff)
        raise PatchRefused(f"the diff does not apply at the base commit: {_last_line(exc.stderr)}") from exc
    return _accepted(*_touched(numstat, diff))


def check_patch(checkout: Path, diff: str) -> list[str]:
    """The paths diff touches, or PatchRefused when it holds what cannot be reviewed as text."""
    diff = _readable(diff)
    return _accepted(*_numstat(checkout, diff))


def _readable(diff: str) -> str:
    """The diff, newline-terminated, unless it is empty or shows a binary, link or submodule change."""
    if not diff.strip():
        raise PatchRefused("the agent changed nothing")
    diff = _terminated(diff)
    _refuse_special(diff)
    return diff


def _accepted(paths: list[str], binary: list[str]) -> list[str]:
    if binary:
        raise PatchRefused(f"binary changes are not accepted: {', '.join(binary)}")
    for path in paths:
        _refuse_path(path)
    return paths


def apply_checked(checkout: Path, diff: str) -> None:
    """Apply a diff check_patch accepted, to the index and the work tree."""
    try:
        checkout_git("apply", *APPLY, "-", cwd=checkout, input=_terminated(diff))
    except GitError as exc:
        raise PatchRefused(f"the diff does not apply at the base commit: {_last_line(exc.stderr)}") from exc


def _terminated(diff: str) -> str:
    return diff if diff.endswith("\n") else diff + "\n"


def _refuse_special(diff: str) -> None:
    path = "?"
    for line in diff.splitlines():
        header = _HEADER.match(line)
        if header:
            path = header.group(2)
        elif _BINARY.match(line):
            raise PatchRefused(f"binary changes are not accepted: {path}")
        elif _SPECIAL_MODE.match(line):
            raise PatchRefused(f"symbolic links and submodules are not accepted: {path}")


def _numstat(checkout: Path, diff: str) -> tuple[list[str], list[str]]:
    """All paths the diff touches (both sides of a rename) and those git sees as binary."""
    try:
        out = checkout_git("apply", "--numstat", "-z", "-", cwd=checkout, input=diff)
    except GitError as exc:
        raise PatchRefused(f"the diff cannot be read: {_last_line(exc.stderr)}") from exc
    return _touched(out, diff)


def _touched(numstat: str, diff: str) -> tuple[list[str], list[str]]:
    """The paths `git apply --numstat -z` printed (and rename sources), and those it saw as binary."""
    paths: list[str] = []
    binary: list[str] = []
    fields = numstat.split("\0")
    i = 0
    while i < len(fields) and fields[i]:
        added, _deleted, name = fields[i].split("\t", 2)
        names = [name] if name else [fields[i + 1], fields[i + 2]]  # some gits write "\0old\0new"
        i += 1 if name else 3
        paths += names
        if added == "-":
            binary += names
    if not paths:
        raise PatchRefused("the diff contains no file changes")
    return sorted(set(paths) | _renamed_from(diff)), binary


def _renamed_from(diff: str) -> set[str]:
    """Source paths of renames, which numstat leaves out."""
    return {unquote_path(m.group(1)) for m in _RENAME_FROM.finditer(diff)}


def unquote_path(path: str) -> str:
    """A path as git prints it: C-quoted (`"b/caf\\303\\251.py"`) when it has unusual bytes."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    raw: bytes = codecs.escape_decode(path[1:-1].encode())[0]
    return raw.decode("utf-8", errors="replace")


def _refuse_path(path: str) -> None:
    if _GENERATED.search(path):
        raise PatchRefused(f"generated or compiled files are not accepted: {path}")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or ".git" in parts:
        raise PatchRefused(f"path outside the work tree is not accepted: {path}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
