"""A cancellation flag that a wait for a process sleeps on beside the process's exit (system/process.py)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class Cancellation(threading.Event):
    """A threading.Event whose set() also wakes every wait watching it through a descriptor (watched()).

    A command's wait then sleeps until the command exits, its time is up or it is cancelled, with no periodic
    wake-up in between (where the kernel has pidfd): a hundred agents that run for minutes cost their worker
    nothing while they run."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: set[int] = set()
        self._guard = threading.Lock()

    def set(self) -> None:
        with self._guard:  # the flag and the descriptors change together: readable exactly while it is set
            super().set()
            for descriptor in self._watchers:
                _signal(descriptor)

    def clear(self) -> None:
        with self._guard:  # else a wait would find its descriptor readable and the flag down, again and again
            super().clear()
            for descriptor in self._watchers:
                _unsignal(descriptor)

    @contextlib.contextmanager
    def watched(self) -> Iterator[int | None]:
        """A descriptor, readable while the flag is set (already, or from when it is set in the block); closed on
        exit. None when the process has no descriptor left: the wait then looks at the flag now and then instead."""
        try:
            descriptor = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError:
            yield None
            return
        with self._guard:
            self._watchers.add(descriptor)
            if self.is_set():  # set before it was watched
                _signal(descriptor)
        try:
            yield descriptor
        finally:
            with self._guard:  # no set() writes to it from here on, so closing cannot hit a reused number
                self._watchers.discard(descriptor)
            os.close(descriptor)


def _signal(descriptor: int) -> None:
    # EAGAIN: the counter is full, so it is readable already. Any other failure must not keep set() from the rest.
    with contextlib.suppress(OSError):
        os.eventfd_write(descriptor, 1)


def _unsignal(descriptor: int) -> None:
    with contextlib.suppress(OSError):  # EAGAIN: not signalled
        os.eventfd_read(descriptor)
