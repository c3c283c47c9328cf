"""A cancellation flag that a wait for a process sleeps on beside the process's exit (system/process.py)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class Cancellation(threading.Event):
    """A threading.Event whose set() also wakes every wait watching it through a descriptor (watched()).

    A command's wait then sleeps until the command exits, its time is up or it is cancelled, with no wake-up in
    between: a hundred agents that run for minutes cost their worker nothing while they run."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: set[int] = set()
        self._guard = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._guard:
            for descriptor in self._watchers:
                _signal(descriptor)

    @contextlib.contextmanager
    def watched(self) -> Iterator[int]:
        """A descriptor, readable once the flag is set (already, or while the block runs); closed on exit."""
        descriptor = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        with self._guard:
            self._watchers.add(descriptor)
        try:
            if self.is_set():  # set before it was watched
                _signal(descriptor)
            yield descriptor
        finally:
            with self._guard:  # no set() writes to it from here on, so closing cannot hit a reused number
                self._watchers.discard(descriptor)
            os.close(descriptor)


def _signal(descriptor: int) -> None:
    with contextlib.suppress(BlockingIOError):  # the counter is full: it is readable already
        os.eventfd_write(descriptor, 1)
