"""A command's wait sleeps until the command exits or is cancelled: a Cancellation wakes it, nothing else does."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from system.cancel import Cancellation
from system.process import ProcessResult, run_process

STARTED = b"started\n"
LONG = ["sh", "-c", "echo started; exec sleep 30"]


class Running:
    """run_process of argv in a thread of its own, with cancelled; started is set once the command printed."""

    def __init__(self, tmp_path: Path, cancelled: threading.Event, argv: list[str] = LONG) -> None:
        self.started = threading.Event()
        self.thread_id = 0
        self.result: ProcessResult | None = None
        self._thread = threading.Thread(target=self._run, args=(tmp_path, cancelled, argv), daemon=True)
        self._thread.start()
        assert self.started.wait(10), "the command never started"

    def _run(self, tmp_path: Path, cancelled: threading.Event, argv: list[str]) -> None:
        self.thread_id = threading.get_native_id()
        self.result = run_process(
            argv, cwd=tmp_path, env=dict(os.environ), timeout=60, cancelled=cancelled, on_output=self._seen
        )

    def _seen(self, chunk: bytes) -> None:
        if STARTED in chunk:
            self.started.set()

    def ended(self) -> ProcessResult:
        self._thread.join(15)
        assert self.result is not None, "the wait did not end"
        return self.result


def wake_ups(thread_id: int) -> int:
    """How many times the thread went to sleep (voluntary context switches), from /proc."""
    status = Path(f"/proc/self/task/{thread_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])


def over_a_second(running: Running) -> int:
    before = wake_ups(running.thread_id)
    time.sleep(1.0)
    return wake_ups(running.thread_id) - before


def test_a_cancellation_stops_every_command_waiting_on_it(tmp_path: Path) -> None:
    cancel = Cancellation()
    first, second = Running(tmp_path, cancel), Running(tmp_path, cancel)
    cancel.set()
    for running in (first, second):
        result = running.ended()
        assert result.cancelled and not result.timed_out
        assert result.exit_code is not None and result.exit_code != 0  # killed, not ended by itself


def test_a_cancellation_set_before_the_command_starts_stops_it(tmp_path: Path) -> None:
    cancel = Cancellation()
    cancel.set()
    result = run_process(LONG, cwd=tmp_path, env=dict(os.environ), timeout=60, cancelled=cancel)
    assert result.cancelled


def test_a_wait_on_a_cancellation_sleeps_until_it_is_set(tmp_path: Path) -> None:
    cancel = Cancellation()
    running = Running(tmp_path, cancel)
    asleep = over_a_second(running)
    cancel.set()
    assert running.ended().cancelled
    assert asleep <= 1  # a wait that looked at the flag four times a second woke four times


def test_a_wait_on_a_plain_event_still_looks_at_it_and_stops(tmp_path: Path) -> None:
    cancel = threading.Event()
    running = Running(tmp_path, cancel)
    looked = over_a_second(running)
    cancel.set()
    assert running.ended().cancelled
    assert looked >= 2


def readable(descriptor: int) -> bool:
    return bool(select.select([descriptor], [], [], 0)[0])


def test_a_watched_descriptor_is_readable_exactly_while_the_flag_is_set() -> None:
    cancel = Cancellation()
    with cancel.watched() as descriptor:
        assert descriptor is not None
        assert not readable(descriptor)
        cancel.set()
        assert readable(descriptor)
        cancel.set()  # twice: one clear still takes it down
        cancel.clear()  # else a wait would wake at once, find the flag down and sleep no more
        assert not readable(descriptor)
    cancel.set()
    with cancel.watched() as descriptor:  # set before it was watched
        assert descriptor is not None and readable(descriptor)


def test_a_command_that_ends_by_itself_leaves_no_descriptor_open(tmp_path: Path) -> None:
    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    cancel = Cancellation()
    before = descriptors()
    for _ in range(5):
        result = run_process(["true"], cwd=tmp_path, env=dict(os.environ), timeout=60, cancelled=cancel)
        assert result.ok
    assert descriptors() == before
    cancel.set()  # no wait watches it any more: nothing is written anywhere
    assert cancel.is_set()


def test_a_cancellation_is_an_event() -> None:
    cancel = Cancellation()
    waited: list[bool] = []
    waiter: Callable[[], None] = lambda: waited.append(cancel.wait(10))  # noqa: E731
    thread = threading.Thread(target=waiter)
    thread.start()
    cancel.set()
    thread.join(15)
    assert waited == [True] and cancel.is_set()
    cancel.clear()
    assert not cancel.is_set()


def _refused(*_: object) -> int:
    raise OSError(24, "Too many open files")


def test_a_process_out_of_descriptors_still_stops_a_cancelled_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "eventfd", _refused)  # the wait gets no descriptor from the flag
    cancel = Cancellation()
    running = Running(tmp_path, cancel)
    looked = over_a_second(running)
    cancel.set()
    assert running.ended().cancelled
    assert looked >= 2  # it looks at the flag now and then instead


@pytest.mark.parametrize("flag", [Cancellation, threading.Event])
def test_a_kernel_without_pidfd_still_waits_for_the_exit_and_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: Callable[[], threading.Event]
) -> None:
    monkeypatch.setattr(os, "pidfd_open", _refused)
    done = run_process(["sh", "-c", "exit 3"], cwd=tmp_path, env=dict(os.environ), timeout=60, cancelled=flag())
    assert done.exit_code == 3 and not done.cancelled
    cancel = flag()
    running = Running(tmp_path, cancel)
    cancel.set()
    assert running.ended().cancelled
