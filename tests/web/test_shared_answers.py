"""The live streams' shared answers: a stale question is read once, in one worker thread, for every stream asking."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import anyio.to_thread
import pytest

from orchestrator.web.shared import SharedAnswers

STREAMS = 100


def blocking_read(release: threading.Event, reads: list[float]) -> Callable[[], int]:
    def read() -> int:
        reads.append(time.monotonic())
        release.wait(10)
        return len(reads)

    return read


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_hundred_streams_asking_a_stale_question_take_one_thread_and_one_read() -> None:
    answers, release, reads = SharedAnswers(), threading.Event(), []
    read = blocking_read(release, reads)

    async def streams() -> tuple[list[int], int]:
        asking = [asyncio.create_task(answers.ask("fleet", read, 60.0)) for _ in range(STREAMS)]
        await until(lambda: bool(reads))
        await asyncio.sleep(0.2)  # every stream has asked by now
        threads_held = anyio.to_thread.current_default_thread_limiter().borrowed_tokens
        release.set()
        return await asyncio.gather(*asking), threads_held

    found, threads_held = asyncio.run(streams())
    assert threads_held == 1
    assert found == [1] * STREAMS and len(reads) == 1


def test_a_fresh_answer_is_not_read_again_and_a_stale_one_is() -> None:
    answers, release, reads = SharedAnswers(), threading.Event(), []
    release.set()
    read = blocking_read(release, reads)

    async def asks() -> list[int]:
        first = await answers.ask("review", read, 0.3)
        again = await answers.ask("review", read, 0.3)
        await asyncio.sleep(0.4)
        return [first, again, await answers.ask("review", read, 0.3)]

    assert asyncio.run(asks()) == [1, 1, 2]


def test_a_failed_read_reaches_every_stream_asking_and_the_next_ask_reads_again() -> None:
    answers, calls = SharedAnswers(), []

    def read() -> str:
        calls.append(1)
        time.sleep(0.1)
        if len(calls) == 1:
            raise OSError("database is locked")
        return "answered"

    async def asks() -> tuple[list[BaseException | str], str]:
        first = await asyncio.gather(*(answers.ask("q", read, 60.0) for _ in range(10)), return_exceptions=True)
        return first, await answers.ask("q", read, 60.0)

    failed, next_answer = asyncio.run(asks())
    assert all(isinstance(each, OSError) for each in failed) and len(calls) == 2
    assert next_answer == "answered"


def test_a_stream_that_goes_away_does_not_stop_the_read_the_others_wait_for() -> None:
    answers, release, reads = SharedAnswers(), threading.Event(), []
    read = blocking_read(release, reads)

    async def streams() -> int:
        leaving = asyncio.create_task(answers.ask("ticket", read, 60.0))
        staying = asyncio.create_task(answers.ask("ticket", read, 60.0))
        await until(lambda: bool(reads))
        leaving.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(streams()) == 1
    assert len(reads) == 1


def test_an_answers_age_tells_a_stream_when_to_ask_again() -> None:
    answers = SharedAnswers()
    assert answers.age("fleet") == float("inf")  # never asked: ask at once
    asyncio.run(answers.ask("fleet", lambda: 1, 60.0))
    assert 0.0 <= answers.age("fleet") < 60.0
