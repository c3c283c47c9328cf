"""Spares: files or folders a worker process keeps under names of its own, to rename into place rather than make.

Used where a ticket would make and delete files: attempt folders (workers/attempt_folders.py) and outcome journal
entries (workers/journal.py). On ext4 without a journal (common on cloud machines) making a file or folder costs
tens of times writing into one that exists (bench/file_churn.py).

A worker leaves its spares when it stops (deleting 512 of them held its exit up by 0.3 s and more); a later process
with none of its own takes them over, each prepared again as it is taken (its process may have stopped while it
prepared it). `fleet gc` deletes those of processes no longer running (remove_stale).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from system.files import remove_tree

SPARE = ".spare-"  # .spare-<pid>-<token>-<n>: no two processes, on this host or another, make the same name
REMOVING = ".removing"  # a spare's name while `fleet gc` deletes it
MAX_SPARES = 256  # per process and kind: more than its slots' attempts that end at once


class Spares:
    """This process's spares of one kind, under root."""

    def __init__(self, root: Path, prepare: Callable[[Path], None], limit: int = MAX_SPARES) -> None:
        self.root = root
        self.prepare = prepare  # readies a spare for its next use (empties it); raises OSError when it cannot
        self.limit = limit  # 0 for a process that stops soon (`fleet gc`): nothing is kept
        self._kept: list[Path] = []
        self._left: list[Path] | None = None  # stopped processes' spares, listed when this process first has none
        self._prefix = f"{SPARE}{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def keep(self, path: Path) -> bool:
        """Rename path to a spare of this process and prepare it for its next use (empty it); False when this
        process keeps enough, path left for the caller to delete. A path gone already is no loss; one prepare
        fails on is deleted."""
        spare = self._new_name()
        if spare is None:
            return False
        try:
            os.rename(path, spare)  # first: the path's name is gone before anything is kept
        except OSError:
            return True
        try:
            self.prepare(spare)
            os.utime(spare, follow_symlinks=False)  # kept now: `fleet gc` removes spares idle for a while
        except OSError:
            with contextlib.suppress(OSError):  # else left for `fleet gc`
                remove_tree(spare)
            return True
        with self._lock:
            self._kept.append(spare)
        return True

    def _new_name(self) -> Path | None:
        with self._lock:
            full = len(self._kept) >= self.limit
            return None if full else self.root / f"{self._prefix}{next(self._numbers)}"

    def take(self, path: Path) -> bool:
        """Rename a spare to path: this process's own, else one a stopped process left, prepared again; False when
        there is none (or `fleet gc` removed the one taken)."""
        with self._lock:
            spare = self._kept.pop() if self._kept else None
        if spare is None:
            return self._take_left(path)
        try:
            os.rename(spare, path)
        except OSError:
            return False
        return True

    def _take_left(self, path: Path) -> bool:
        while (left := self._next_left()) is not None:
            try:
                os.rename(left, path)
            except FileNotFoundError:  # another process took it, or `fleet gc` removed it
                continue
            except OSError:
                return False
            try:
                self.prepare(path)
            except OSError:
                with contextlib.suppress(OSError):  # else left for `fleet gc`
                    remove_tree(path)
                return False
            return True
        return False

    def _next_left(self) -> Path | None:
        with self._lock:
            if self._left is None:
                self._left = [self.root / name for name in _left_by_stopped(self.root)] if self.limit else []
            return self._left.pop() if self._left else None


def _left_by_stopped(root: Path) -> list[str]:
    """The names of the spares under root whose process no longer runs."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [name for name in names if name.startswith(SPARE) and not _running(name)]


def remove_stale(root: Path, idle_seconds: float) -> int:
    """Delete the spares under root of processes no longer running, or untouched for idle_seconds; how many.

    Each is renamed first: a worker renaming the same spare into place either wins (and it is skipped here) or
    finds it gone (and makes a new one), so nothing in use is ever deleted from under it."""
    if not root.is_dir():
        return 0
    removed, before = 0, time.time() - idle_seconds
    for name in os.listdir(root):
        spare, doomed = root / name, root / f"{REMOVING}{name}"
        with contextlib.suppress(OSError):  # taken meanwhile
            if name.startswith(REMOVING + SPARE):  # an earlier gc stopped halfway
                remove_tree(spare)
            elif name.startswith(SPARE) and (not _running(name) or spare.lstat().st_mtime < before):
                os.rename(spare, doomed)
                remove_tree(doomed)
                removed += 1
    return removed


def _running(name: str) -> bool:
    """Whether the process that named this spare runs (on this host, as far as its pid tells)."""
    pid = name[len(SPARE) :].split("-")[0]
    if not pid.isdigit() or int(pid) == 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
