"""Attempt folders (attempts/<id>): made from a spare this process kept, rather than folder by folder, per ticket.

An attempt's folder holds the agent's prompt, HOME and TMPDIR, and the verification's HOME, TMPDIR and reports:
seven folders and a file a ticket made and deleted. On ext4 without a journal (common on cloud machines) making a
file or folder costs tens of times a write into one that exists (bench/file_churn.py), and these were the most a
worker made. So a concluded attempt's folder is renamed to a spare, emptied of all but those folders (SKELETON), and
renamed to the next attempt's; the prompt file is kept too, and written over (system/files.py write_over).

Only a folder whose every command ran sandboxed is kept: bubblewrap's process namespace ends each one with its
sandbox, so nothing still running writes there when the next attempt gets it. Before any command of an attempt runs
without a sandbox, its folder is marked (UNCONFINED), and a marked folder is deleted: what decides is how the
commands ran, not whether a sandbox could start when the attempt ended (bubblewrap installed meanwhile, say).

What the sandboxed code left is hostile: a skeleton entry is kept only as the worker made it (a small folder, or a
file with no other name; not a link; the worker's own; the mode it was made with; the attempt folder's inode flags,
which chattr sets; no extended attributes such as ACLs); anything else is removed, so no attempt finds in its
folder anything an earlier one put there, names included, and the kept prompt is written over before its agent
starts. The run of every sandboxed command returns only once the kernel has ended all its sandbox's processes
(system/sandbox_start.py wait_sandbox_end), so none still runs while its folder is emptied. Spares are kept and
deleted as workers/spares.py says.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from system.files import remove_tree
from workers.spares import MAX_SPARES, Spares

Skeleton = Mapping[str, "Skeleton | None"]  # a folder's kept entries; None: a file, written over when next used
SKELETON: Skeleton = {
    "agent": {"tmp": {}, "prompt.md": None},  # the agent's scratch, its prompt and TMPDIR (workers/agent_sandbox.py)
    "home": {".cache": {}},  # the agent's HOME and XDG_CACHE_HOME
    "candidate": {"home": {}, "tmp": {}},  # the verification's reports, and its tests' HOME and TMPDIR
}
UNCONFINED = ".unconfined"  # in an attempt's folder: one of its commands ran (or is about to run) unsandboxed


class AttemptFolders:
    """The attempt folders under root, and the spares this process kept."""

    def __init__(self, root: Path, spares: int = MAX_SPARES) -> None:
        self.root = root
        self.spares = Spares(root, _empty_to_skeleton, spares)

    def folder(self, attempt_id: int) -> Path:
        """The attempt's folder: the one it has, else a spare renamed to it, else a new one."""
        path = self.root / str(attempt_id)
        if not path.is_dir() and not self.spares.take(path):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, attempt_id: int) -> Path:
        """The attempt's folder for a run of its agent, the first of its delivery to use it: a folder already there
        is an earlier delivery's (a worker stopped, or its lease lapsed), and goes first with whatever that run's
        commands left in it, whose links the worker would write through when it prepares the next run. Its mark
        stays: what an earlier run started unsandboxed may still write there by its path."""
        path = self.root / str(attempt_id)
        unconfined = os.path.lexists(path / UNCONFINED)
        remove_tree(path)
        if unconfined:
            self.mark_unconfined(attempt_id)
        return self.folder(attempt_id)

    def verification(self, attempt_id: int) -> Path:
        """The attempt's folder for its verification, whose test runs' folder (`candidate`) is as the worker made it:
        an earlier delivery's runs may have left anything there (a `usercustomize.py` in the tests' HOME)."""
        path = self.folder(attempt_id)
        candidate = path / "candidate"
        if os.path.lexists(candidate):
            made = Made.of(path)
            if _as_made(candidate, made, file=False):
                _empty(candidate, SKELETON["candidate"] or {}, made)
            else:  # its mode or attributes changed: made anew
                remove_tree(candidate)
        return path

    def mark_unconfined(self, attempt_id: int) -> None:
        """Before a command of the attempt runs without a sandbox: its folder will not serve another attempt."""
        (self.folder(attempt_id) / UNCONFINED).touch()

    def discard(self, attempt_id: int) -> None:
        """Delete the attempt's folder, or when none of its commands ran unsandboxed, keep it emptied as a spare."""
        path = self.root / str(attempt_id)
        reuse = path.is_dir() and not (path / UNCONFINED).exists()
        if not (reuse and self.spares.keep(path)):
            with contextlib.suppress(OSError):  # else left for `fleet gc`
                remove_tree(path)


FS_IOC_GETFLAGS = 0x80086601  # an inode's flags: chattr's (append-only, synchronous, encrypted, case-folded...)
FOLDER_BYTES = 4096  # a folder larger once held many entries: ext4 never shrinks it, so it is made anew


@dataclass(frozen=True)
class Made:
    """What the worker's own folder, the attempt folder itself, shows: what a kept entry must show too."""

    mode: int
    flags: int | None

    @classmethod
    def of(cls, folder: Path) -> Made:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return cls(stat.S_IMODE(os.fstat(handle).st_mode), _flags(handle))
        finally:
            os.close(handle)


def _empty_to_skeleton(folder: Path) -> None:
    _empty(folder, SKELETON, Made.of(folder))


def _empty(folder: Path, keep: Skeleton, made: Made) -> None:
    """Remove all in folder but the kept entries that are still as the worker made them (folders emptied alike)."""
    with os.scandir(folder) as found:
        entries = list(found)
    for entry in entries:
        kept = entry.name in keep and _as_made(Path(entry.path), made, keep[entry.name] is None)
        inner = keep.get(entry.name)
        if kept and inner is not None:
            _empty(Path(entry.path), inner, made)
        elif not kept:
            remove_tree(Path(entry.path))


def _as_made(path: Path, made: Made, file: bool) -> bool:
    """A folder (small), or a file with no other name, that is the worker's own, with the mode it was made with (a
    file's: the folder's without execute bits), the attempt folder's inode flags and no extended attributes."""
    kind = 0 if file else os.O_DIRECTORY
    try:  # O_NONBLOCK: a fifo in a file's place must not hold the worker
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | kind)
    except OSError:  # a link, or a file where a folder was
        return False
    try:
        info = os.fstat(handle)
        shape = stat.S_ISREG(info.st_mode) and info.st_nlink == 1 if file else info.st_size <= FOLDER_BYTES
        mode = made.mode & 0o666 if file else made.mode
        if not shape or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) != mode:
            return False
        return _flags(handle) == made.flags and not _attributes(handle)
    finally:
        os.close(handle)


def _flags(handle: int) -> int | None:
    """The inode's flags; None where the file system keeps none."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(handle, FS_IOC_GETFLAGS, bytes(8))[:4])[0])
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.ENOTSUP, errno.EINVAL):
            return None
        raise


def _attributes(handle: int) -> list[str]:
    """The extended attributes (ACLs among them); none where the file system keeps none."""
    try:
        return os.listxattr(handle)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            return []
        raise
