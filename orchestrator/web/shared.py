"""Answers the live streams share: each question is read from the database at most once per poll interval.

A hundred browsers on the Fleet page ask the same questions every second; one of them reads the database, in
one thread of the web process's pool, and the others wait for its answer on the event loop, so the web process's
cost of a quiet fleet does not grow with its viewers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from starlette.concurrency import run_in_threadpool

KEPT = 1024  # questions remembered (one per watched ticket, list of tickets, or page kind)


class SharedAnswers:
    """A thread-safe memo of recent answers by question, each read by one caller at a time."""

    def __init__(self) -> None:
        self._answers: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._reading: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[Any]] = {}

    async def ask(self, key: Hashable, read: Callable[[], Any], max_age: float) -> Any:
        """The answer for a live stream: a fresh one, else one read in a worker thread that every stream asking
        the same question meanwhile waits for (a hundred streams take one thread of the pool, not a hundred)."""
        known, answer = self.fresh(key, max_age)
        if known:
            return answer
        loop = asyncio.get_running_loop()
        reading = self._reading.get((loop, key))
        if reading is None:
            reading = loop.create_task(run_in_threadpool(self.read, key, read, max_age))
            self._reading[(loop, key)] = reading
            reading.add_done_callback(lambda done: self._read_done((loop, key), done))
        return await asyncio.shield(reading)  # a stream that goes away does not stop the others' read

    def _read_done(self, reading_key: tuple[asyncio.AbstractEventLoop, Hashable], done: asyncio.Task[Any]) -> None:
        self._reading.pop(reading_key, None)
        if not done.cancelled():
            done.exception()  # retrieved: its streams raise it, and none may be left to

    def fresh(self, key: Hashable, max_age: float) -> tuple[bool, Any]:
        """(True, answer) when the question was answered less than max_age seconds ago; else (False, None)."""
        with self._guard:
            found = self._answers.get(key)
        if found is not None and time.monotonic() - found[0] < max_age:
            return True, found[1]
        return False, None

    def age(self, key: Hashable) -> float:
        """Seconds since the question was last answered (infinite when it never was, or was forgotten)."""
        with self._guard:
            found = self._answers.get(key)
        return float("inf") if found is None else time.monotonic() - found[0]

    def read(self, key: Hashable, read: Callable[[], Any], max_age: float) -> Any:
        """The answer, read now unless another caller read it while this one waited for the question's lock."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            known, answer = self.fresh(key, max_age)
            if known:
                return answer
            answer = read()
            with self._guard:
                self._answers[key] = (time.monotonic(), answer)
                self._answers.move_to_end(key)
                while len(self._answers) > KEPT:
                    old, _ = self._answers.popitem(last=False)
                    self._locks.pop(old, None)
            return answer
