"""Attempt folders (attempts/<id>): made from a spare this process kept, rather than folder by folder, per ticket.

An attempt's folder holds the agent's prompt, HOME and TMPDIR, and the verification's HOME, TMPDIR and reports:
seven folders and a file a ticket made and deleted. On ext4 without a journal (common on cloud machines) making a
file or folder costs tens of times a write into one that exists (bench/file_churn.py), and these were the most a
worker made. So a concluded attempt's folder is renamed to a spare, emptied of all but those folders (SKELETON), and
renamed to the next attempt's.

Only a folder whose every command ran sandboxed is kept: bubblewrap's process namespace ends each one with its
sandbox, so nothing still running writes there when the next attempt gets it. What the sandboxed code left is
hostile: a skeleton folder is kept only as the worker made it (a folder, not a link, the worker's own, the
attempt folder's mode, no extended attributes such as ACLs); anything else is removed, so no attempt finds in its
folder anything an earlier one put there, names included. Spares are kept and deleted as workers/spares.py says.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from system.files import remove_tree
from workers.spares import MAX_SPARES, Spares

Skeleton = Mapping[str, "Skeleton"]
SKELETON: Skeleton = {
    "agent": {"tmp": {}},  # the agent's scratch (its prompt) and TMPDIR (workers/agent_sandbox.py)
    "home": {".cache": {}},  # the agent's HOME and XDG_CACHE_HOME
    "candidate": {"home": {}, "tmp": {}},  # the verification's reports, and its tests' HOME and TMPDIR
}


class AttemptFolders:
    """The attempt folders under root, and the spares this process kept."""

    def __init__(self, root: Path, spares: int = MAX_SPARES) -> None:
        self.root = root
        self.spares = Spares(root, spares)

    def folder(self, attempt_id: int) -> Path:
        """The attempt's folder: the one it has, else a spare renamed to it, else a new one."""
        path = self.root / str(attempt_id)
        if not path.is_dir() and not self.spares.take(path):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def discard(self, attempt_id: int, reuse: bool) -> None:
        """Delete the attempt's folder, or with reuse (its commands all ran sandboxed), keep it emptied as a spare."""
        path = self.root / str(attempt_id)
        spare = self.spares.new_name() if reuse else None
        try:
            if spare is None:
                remove_tree(path)
                return
            os.rename(path, spare)  # first: the attempt's name is gone before anything is kept
        except OSError:  # gone already, or left for `fleet gc`
            return
        try:
            _empty(spare, SKELETON, stat.S_IMODE(os.lstat(spare).st_mode))
            os.utime(spare)  # `fleet gc` removes spares idle for a while
        except OSError:
            with contextlib.suppress(OSError):  # else left for `fleet gc`
                remove_tree(spare)
            return
        self.spares.keep(spare)


def _empty(folder: Path, keep: Skeleton, mode: int) -> None:
    """Remove all in folder but the kept folders (emptied the same way) that are still as the worker made them."""
    with os.scandir(folder) as found:
        entries = list(found)
    for entry in entries:
        inner = keep.get(entry.name)
        if inner is not None and _as_made(entry, mode):
            _empty(Path(entry.path), inner, mode)
        else:
            remove_tree(Path(entry.path))


def _as_made(entry: os.DirEntry[str], mode: int) -> bool:
    """A folder (not a link), the worker's own, with the mode it was made with and no extended attributes."""
    info = entry.stat(follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) != mode:
        return False
    try:
        return not os.listxattr(entry.path, follow_symlinks=False)
    except OSError as exc:  # a file system without extended attributes has none
        return exc.errno == errno.ENOTSUP
