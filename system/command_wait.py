"""Waiting for a started command in the thread that started it: its output read as it comes, its exit, its time
limit and its cancellation, through one poll of a pidfd of the command, its output pipe and the cancellation's
descriptor.

No reader thread per command: a thread costs a start and a join, and every chunk it read handed the interpreter
lock between two threads. A command running for minutes costs no wake-up but for its output; a plain Event (or
a kernel with no pidfd) is looked at every CHECK_SECONDS.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from system.cancel import Cancellation

CHECK_SECONDS = 0.25  # how often a wait looks at a flag or an exit that cannot wake it
LONGEST_SLEEP = 3600.0  # one poll of a wait that a flag or the exit wakes
CHUNK_BYTES = 65_536


class OutputPipe:
    """The command's output pipe, read without blocking: each chunk goes to take; open until its end is read."""

    def __init__(self, stream: IO[bytes] | None, take: Callable[[bytes], None]) -> None:
        self.fd = None if stream is None else stream.fileno()
        self.take = take
        if self.fd is not None:
            os.set_blocking(self.fd, False)

    def read(self) -> None:
        """Read what is there now; at the end (every writer closed it) the pipe is no longer open."""
        if self.fd is None:
            return
        try:
            chunk = os.read(self.fd, CHUNK_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self.fd = None
            return
        self.take(chunk)

    def read_rest(self, seconds: float) -> None:
        """Read until every writer closed the pipe (the command's background children too), for at most seconds."""
        deadline = time.monotonic() + seconds
        while self.fd is not None and (left := deadline - time.monotonic()) > 0:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if poller.poll(left * 1000):
                self.read()


def wait_reading(
    proc: subprocess.Popen[bytes], deadline: float, cancelled: threading.Event | None, pipe: OutputPipe
) -> tuple[bool, bool]:
    """Read the output as it comes until proc exits (reaped), the deadline passes or cancelled is set; returns
    (timed out, cancelled)."""
    with _exit_watch(proc, cancelled) as watch:
        while True:
            ready = watch.poll(deadline, pipe)
            if watch.exited(ready):
                proc.wait()
                return False, False
            if cancelled is not None and cancelled.is_set():
                return False, True
            if time.monotonic() >= deadline:
                return True, False


class _ExitWatch:
    """One poller of the pidfd (when there is one), the cancellation's descriptor and the output pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], pidfd: int | None, wake: int | None, period: float) -> None:
        self.proc, self.pidfd, self.period = proc, pidfd, period
        self.poller = select.poll()
        for fd in (pidfd, wake):
            if fd is not None:
                self.poller.register(fd, select.POLLIN)
        self.reading: int | None = None  # the pipe's descriptor while it is registered

    def poll(self, deadline: float, pipe: OutputPipe) -> set[int]:
        """The descriptors ready by the deadline (or the period); what the pipe holds is read."""
        if pipe.fd != self.reading:  # first, or its end was read
            if self.reading is not None:
                self.poller.unregister(self.reading)
            if pipe.fd is not None:
                self.poller.register(pipe.fd, select.POLLIN)
            self.reading = pipe.fd
        seconds = min(self.period, max(0.0, deadline - time.monotonic()))
        ready = {fd for fd, _ in self.poller.poll(seconds * 1000)}
        if self.reading is not None and self.reading in ready:
            pipe.read()
        return ready

    def exited(self, ready: set[int]) -> bool:
        if self.proc.returncode is not None:
            return True
        if self.pidfd is not None:
            return self.pidfd in ready
        return self.proc.poll() is not None


@contextlib.contextmanager
def _exit_watch(proc: subprocess.Popen[bytes], cancelled: threading.Event | None) -> Iterator[_ExitWatch]:
    pidfd = None
    if proc.returncode is None:  # a reaped pid may name another process by now
        with contextlib.suppress(AttributeError, OSError):  # no pidfd (old kernel, or not Linux): looked at
            pidfd = os.pidfd_open(proc.pid)
    try:
        with _woken_by(cancelled) as wake:
            looks = pidfd is None or (wake is None and cancelled is not None)
            yield _ExitWatch(proc, pidfd, wake, CHECK_SECONDS if looks else LONGEST_SLEEP)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _woken_by(cancelled: threading.Event | None) -> contextlib.AbstractContextManager[int | None]:
    """The descriptor cancelled's set() makes readable, when it is a Cancellation."""
    return cancelled.watched() if isinstance(cancelled, Cancellation) else contextlib.nullcontext()
