"""The group writer: requests waiting together are written in one call, each gets its own answer or failure."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers.group_writer import GroupWriter

WAIT_SECONDS = 10.0


class Recorder:
    """A write that keeps each group it was given, holds the first one until released, and refuses "bad"."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def write(self, requests: list[str]) -> list[str]:
        self.groups.append(list(requests))
        self.started.set()
        self.release.wait(WAIT_SECONDS)
        if "bad" in requests:
            raise ValueError("a bad request")
        if "down" in requests:
            raise ConnectionError("the database did not answer")
        return [request.upper() for request in requests]


def _writer(recorder: Recorder, most: int = 20) -> GroupWriter[str, str]:
    return GroupWriter(recorder.write, most, lambda exc: isinstance(exc, ConnectionError), "test-group-writer")


def _outcome(writer: GroupWriter[str, str], request: str) -> str:
    try:
        return writer.submit(request)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _submit_behind_a_busy_write(writer: GroupWriter[str, str], recorder: Recorder, later: list[str]) -> list[str]:
    """Submit "first"; while its write is held, submit `later`; once all of them wait, let the writer go on.
    Returns each request's answer or failure, in the order given."""
    with ThreadPoolExecutor(len(later) + 1) as pool:
        first = pool.submit(_outcome, writer, "first")
        assert recorder.started.wait(WAIT_SECONDS)
        outcomes = [pool.submit(_outcome, writer, request) for request in later]
        deadline = time.monotonic() + WAIT_SECONDS
        while writer._waiting.qsize() < len(later):  # every later request is queued behind the busy write
            assert time.monotonic() < deadline
            time.sleep(0.01)
        recorder.release.set()
        return [first.result(WAIT_SECONDS), *(outcome.result(WAIT_SECONDS) for outcome in outcomes)]


def test_requests_waiting_together_are_written_in_one_call_and_each_gets_its_own_answer() -> None:
    recorder = Recorder()
    later = [f"r{n}" for n in range(5)]
    answers = _submit_behind_a_busy_write(_writer(recorder), recorder, later)
    assert answers == ["FIRST", "R0", "R1", "R2", "R3", "R4"]
    assert recorder.groups[0] == ["first"]
    assert sorted(recorder.groups[1]) == later and len(recorder.groups) == 2


def test_a_group_is_never_larger_than_its_bound() -> None:
    recorder = Recorder()
    later = [f"r{n}" for n in range(5)]
    answers = _submit_behind_a_busy_write(_writer(recorder, most=2), recorder, later)
    assert answers == ["FIRST", "R0", "R1", "R2", "R3", "R4"]
    assert [len(group) for group in recorder.groups] == [1, 2, 2, 1]


def test_a_request_that_fails_fails_alone_and_the_others_of_its_group_are_written() -> None:
    recorder = Recorder()
    answers = _submit_behind_a_busy_write(_writer(recorder), recorder, ["r0", "bad", "r1"])
    assert answers == ["FIRST", "R0", "ValueError: a bad request", "R1"]
    together, *alone = recorder.groups[1:]
    assert sorted(together) == ["bad", "r0", "r1"]
    assert sorted(alone) == [["bad"], ["r0"], ["r1"]]  # each written again on its own


def test_a_failure_every_request_shares_reaches_each_of_them_without_writing_them_again() -> None:
    recorder = Recorder()
    answers = _submit_behind_a_busy_write(_writer(recorder), recorder, ["r0", "down", "r1"])
    failure = "ConnectionError: the database did not answer"
    assert answers == ["FIRST", failure, failure, failure]
    assert len(recorder.groups) == 2  # the database did not answer: no request is tried alone


def test_the_writer_keeps_answering_after_a_failure() -> None:
    recorder = Recorder()
    recorder.release.set()
    writer = _writer(recorder)
    with pytest.raises(ValueError, match="a bad request"):
        writer.submit("bad")
    assert writer.submit("again") == "AGAIN"


def test_a_writer_needs_room_for_one_request() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        GroupWriter(Recorder().write, 0, lambda exc: False, "test-group-writer")
