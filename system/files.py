"""Folders on disk: how much they hold, and removing them even when an agent left them read-only."""

from __future__ import annotations

import functools
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO


def disk_usage(root: Path) -> int:
    """Bytes on disk used by the files under root."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def memory_file(name: str) -> BinaryIO:
    """A file that lives in memory only (no folder, no inode on disk), open for reading and writing."""
    return os.fdopen(os.memfd_create(name, os.MFD_CLOEXEC), "w+b")


def remove_tree(path: Path) -> None:
    """Delete path (file, link or folder; missing is fine) even when an agent left read-only folders in it."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)
    except OSError:
        _make_tree_writable(path)
        shutil.rmtree(path)


def _make_tree_writable(path: Path) -> None:
    owner_all = stat.S_IRWXU
    os.chmod(path, os.lstat(path).st_mode | owner_all)
    for folder, dirs, _files in os.walk(path):
        for name in dirs:  # before os.walk lists them
            child = os.path.join(folder, name)
            if not os.path.islink(child):
                os.chmod(child, os.lstat(child).st_mode | owner_all)


def program_on(name: str, search_path: str | None) -> str | None:
    """The absolute path of program name on search_path (the PATH; None: the worker's), remembered: a hit is checked
    with one access() instead of a walk of the PATH at every command (a worker runs a dozen per ticket), and a
    program moved or removed is looked up again. Relative entries of the PATH are skipped: they would name a
    program in whatever folder a command runs in, a checkout's among them."""
    search_path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    found = _looked_up(name, search_path)
    if found is not None and not os.access(found, os.X_OK):
        _looked_up.cache_clear()
        found = _looked_up(name, search_path)
    return found


@functools.lru_cache(maxsize=64)
def _looked_up(name: str, search_path: str) -> str | None:
    folders = [folder for folder in search_path.split(os.pathsep) if os.path.isabs(folder)]
    return shutil.which(name, path=os.pathsep.join(folders)) if folders else None
