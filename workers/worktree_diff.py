"""The exact patch from a commit to a leased checkout, read without writing to the mirror, and its size limit."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from system.files import read_within
from system.git import (
    GIT_OUTPUT_LIMIT,
    NO_SUBMODULES,
    GitError,
    GitOutputTooLarge,
    GitOverBounds,
    checkout_git,
    checkout_git_bytes,
)
from verification.attributes import ATTRIBUTES_FILE, defined_macros, refusal
from workers.scratch_git import scratch_objects

ESC = "surrogateescape"  # file names that are not UTF-8 pass through git calls unchanged
PATHS_PER_CALL = 256  # paths per git command line, well under the argument size limit
ATTRIBUTES_READ = 100 * 2**20  # git reads no attributes file larger than this


class WorktreeError(Exception):
    """A worktree slot could not be prepared or used."""


class DiffNotKept(WorktreeError):
    """An attempt's changes cannot be kept as its diff; the message says why."""


class DiffTooLarge(DiffNotKept):
    """An attempt's changes are over the diff size limit: no diff was kept, nothing reached the mirror."""

    def __init__(self, size: int, limit: int, measured: str = "the diff is") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{measured} {size:,} bytes, over FLEET_MAX_DIFF_BYTES ({limit:,})")


class AttributesRefused(DiffNotKept):
    """git could not take the diff under the checkout's own `.gitattributes`, which change how git converts files
    (an encoding a file is not in): the message is verification's refusal of them (verification/attributes.py)."""


class CheckoutDiff:
    """git diff of one checkout (path, with its git dir named explicitly) against base_sha."""

    def __init__(self, path: Path, gitdir: Path, mirror: Path, base_sha: str) -> None:
        self.path, self.gitdir, self.mirror, self.base_sha = path, gitdir, mirror, base_sha

    def patch(self, limit: int | None) -> bytes:
        """The patch (edits, new/deleted files, commits); .gitignore respected; DiffTooLarge over limit.

        Edits and deletions of tracked files are diffed against the checkout with no file written (one git call
        after status); when there are new files, the changed files are hashed into a scratch object folder that
        borrows the mirror's objects, through a scratch copy of the index, and both are deleted on return. With a
        limit, the bytes the changes add are measured by stat before git reads any of them, and the patch by its
        size before Python reads it. When git fails, and the checkout's attributes files change how git converts
        files, AttributesRefused says so: they are what git failed on (`* working-tree-encoding=UTF-16` over files
        that are not). Else the GitError's message, the attempt's verdict, names none of the host's folders.
        """
        try:
            return self._taken(limit)
        except GitError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: GitError) -> DiffNotKept | GitError:
        """What git failing to take the diff is: AttributesRefused when the checkout's attributes files are refused,
        else exc naming none of the host's folders; git over its bounds in the checkout is a DiffNotKept naming why."""
        if isinstance(exc, GitOverBounds):
            return DiffNotKept(self._hide_folders(str(exc)))
        try:
            reason = self._attributes_refusal()
        except GitError:
            reason = None
        if reason is not None:
            return AttributesRefused(reason)
        return GitError(exc.args_, exc.returncode, self._hide_folders(exc.stderr))

    def _taken(self, limit: int | None) -> bytes:
        changed = self._changed(limit)
        if limit is not None:
            self._check_added(changed, limit)
        if not changed:
            return b""
        if all(state != "?" and _plain(self.path / path) for path, state in changed):
            return self._patch(limit, _literal(path for path, _ in changed))
        with tempfile.TemporaryDirectory(prefix="fleet-diff-") as tmp:
            scratch = scratch_objects(Path(tmp), self.gitdir, self.mirror)
            # New files must be hashed to be diffed: only what status saw changed is, into the scratch objects.
            paths = "".join(f"{path}\0" for path, _ in changed)
            stage = ("update-index", "--add", "--remove", "--replace", "-z", "--stdin")
            self._git(*stage, input=paths, env=scratch, errors=ESC)
            return self._patch(limit, (), ("--cached",), scratch)

    def _patch(
        self, limit: int | None, paths: Sequence[str], options: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> bytes:
        """`git diff base_sha` as bytes, into a memory file whose size is checked before Python reads it.

        Without --cached, edits of tracked files are diffed straight against the checkout (git hashes them in
        memory); the slot's index, which only Fleet writes, tells git which files are unchanged and is never
        written back."""
        # --no-textconv/--no-ext-diff: no configured command runs.
        flags = ("--binary", "--no-color", "--no-ext-diff", "--no-textconv", *options)
        diff = ("--no-optional-locks", "diff", NO_SUBMODULES, *flags, self.base_sha, "--", *paths)
        with _read_within(limit) as cap:
            return checkout_git_bytes(*explicit(self.path, self.gitdir), *diff, cwd=self.path, env=env, limit_bytes=cap)

    def _attributes_refusal(self) -> str | None:
        """Verification's refusal of the checkout's attributes files against base_sha's, if any. Read as git reads
        them, ignored ones too (git reads those as well); nothing is hashed, where git failed. A git call for each
        attributes file the base has: files the agent adds need none."""
        pathspec = f":(glob)**/{ATTRIBUTES_FILE}"
        tracked = set(filter(None, self._git("ls-files", "-z", "--", pathspec, errors=ESC).split("\0")))
        others = filter(None, self._git("ls-files", "-z", "--others", "--", pathspec, errors=ESC).split("\0"))
        macros = defined_macros(self._base_text(ATTRIBUTES_FILE), self._checkout_text(ATTRIBUTES_FILE))
        for path in [*sorted(tracked), *others]:
            before = self._base_text(path) if path in tracked else ""
            reason = refusal(path, before, self._checkout_text(path), macros)
            if reason is not None:
                return reason
        return None

    def _hide_folders(self, text: str) -> str:
        """text with the slot's git dir, the mirror and the checkout named by what they are."""
        for folder, name in ((self.gitdir, "<git dir>"), (self.mirror, "<mirror>"), (self.path, "<checkout>")):
            text = text.replace(str(folder), name)
        return text

    def _base_text(self, path: str) -> str:
        try:
            return self._git("cat-file", "blob", f"{self.base_sha}:{path}", errors=ESC)
        except GitError:
            return ""

    def _checkout_text(self, path: str) -> str:
        """The attributes file at path as git reads it: none through a link or where it is not a regular file."""
        return (read_within(self.path, path, ATTRIBUTES_READ) or b"").decode("utf-8", ESC)

    def _git(self, *args: str, **options: Any) -> str:
        return checkout_git(*explicit(self.path, self.gitdir), *args, cwd=self.path, **options)

    def _changed(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(path, state) of each path whose file differs from the index: M or T changed, D deleted, ? untracked.

        The listing is read up to limit: each path it names is in the diff at least as long (`diff --git a/P b/P`),
        so a longer listing is a diff over it (many empty files, long names), refused before git hashes any."""
        # --no-optional-locks: the slot's index (in the mirror) is not refreshed and written either.
        status = ("status", NO_SUBMODULES, "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
        with _read_within(limit, "the diff is too large: the list of changed files is") as cap:
            entries = self._git("--no-optional-locks", *status, errors=ESC, limit_bytes=cap).split("\0")
        # "XY path": Y compares the file with the index. A nested repository shows as "dir/"; staged as "dir",
        # it is a gitlink, as `git add -A` would make it.
        return [(entry[3:].rstrip("/"), entry[1]) for entry in entries if len(entry) > 3 and entry[1] != " "]

    def _check_added(self, changed: list[tuple[str, str]], limit: int) -> None:
        """DiffTooLarge when the changed files add more than limit bytes: new files whole, edited ones by growth."""
        sizes = {path: _file_size(self.path / path) for path, _ in changed}
        added = sum(sizes.values())
        if added > limit:  # edited files count by what they grew; asked of git only when it can matter
            edited = [path for path, state in changed if state in "MT"]
            added -= sum(min(size, sizes[path]) for path, size in self._base_sizes(edited).items())
        if added > limit:
            raise DiffTooLarge(added, limit, "the diff is too large: the changed files add")

    def _base_sizes(self, paths: list[str]) -> dict[str, int]:
        """The size of each path's blob at base_sha (paths that are not blobs there are left out)."""
        sizes: dict[str, int] = {}
        for start in range(0, len(paths), PATHS_PER_CALL):
            chunk = paths[start : start + PATHS_PER_CALL]
            listing = self._git("--literal-pathspecs", "ls-tree", "-l", "-z", self.base_sha, "--", *chunk, errors=ESC)
            for entry in filter(None, listing.split("\0")):
                meta, path = entry.split("\t", 1)
                if meta.split()[-1].isdigit():
                    sizes[path] = int(meta.split()[-1])
        return sizes


@contextmanager
def _read_within(limit: int | None, measured: str = "the diff is") -> Iterator[int]:
    """What git's output is read to: the diff's limit, else git()'s own. Output past the diff's limit is
    DiffTooLarge (git wrote little past it into memory: its writes fail there, system/files.py)."""
    try:
        yield GIT_OUTPUT_LIMIT if limit is None else limit
    except GitOutputTooLarge as exc:
        if limit is None:
            raise
        raise DiffTooLarge(exc.size, limit, measured) from None


class DiffHoldsNul(DiffNotKept):
    """A text file of the diff holds a NUL byte past the first 8,000 bytes, where git looks for one to call a file
    binary: binary changes are not accepted, and PostgreSQL stores no NUL in text (the attempt's end could never be
    written, and the attempt ran again and again)."""

    def __init__(self, diff: bytes) -> None:
        path = _file_at(diff, diff.index(0))
        super().__init__(f"the diff holds a NUL byte ({path}): binary changes are not accepted")


class DiffNotUtf8(DiffNotKept):
    """A line of the diff is not UTF-8 (a latin-1 file's accented line): a diff is kept as UTF-8 text, and such a
    line, replaced, would be tested and delivered as bytes the agent never wrote."""

    def __init__(self, diff: bytes, at: int) -> None:
        path = _file_at(diff, at)
        super().__init__(f"the diff holds bytes that are not UTF-8 ({path}): diffs are kept as UTF-8 text")


def _file_at(diff: bytes, at: int) -> str:
    """The file of the diff's section holding byte `at`, as git's header names it (a quoted name stays whole)."""
    header = diff.rfind(b"\ndiff --git ", 0, at) + 1
    return diff[header : diff.find(b"\n", header)].rpartition(b" b/")[2].decode("utf-8", "replace")


def explicit(path: Path, gitdir: Path) -> tuple[str, str]:
    """git options naming the git dir and the work tree, so neither .git nor core.worktree is consulted."""
    return f"--git-dir={gitdir}", f"--work-tree={path}"


def _plain(path: Path) -> bool:
    """True for a file, a link or nothing at path: what git diffs from the checkout as it would from the index (a
    folder there may be a nested repository, which only staging turns into a gitlink)."""
    try:
        return not stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def _literal(paths: Iterable[str]) -> list[str]:
    """Pathspecs that match exactly these paths (no glob, no magic), or none when too many for one command line."""
    chosen = [f":(literal){path}" for path in paths]
    return chosen if len(chosen) <= PATHS_PER_CALL else []


def _file_size(path: Path) -> int:
    """The bytes git would hash for path: a file's length, a link's target length; 0 for anything else or gone."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode) else 0
