"""A group writer: one thread writes what many threads ask for, as many requests as are waiting in one call.

A wave of agents ends at once. Each slot used to take its own turn on SQLite's write lock to record its end, run a
scheduler pass and claim its next attempt: a hundred transactions of a dozen statements each, one after the other,
while the hundredth slot waited. The group writer takes every request waiting (up to `most`) into one write: on
the hot path, one transaction and one scheduler pass for all the slots the wave frees.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class GroupWriter(Generic[Request, Answer]):
    """`submit(request)` waits for its answer; the writer thread answers the waiting requests together.

    write(requests) returns one answer per request, in order. When it raises, a request never pays for another's
    failure: unless `shared(exc)` says the failure is every request's (the database did not answer), each request
    of the group is written again alone, and only the one that fails alone gets the exception."""

    def __init__(
        self,
        write: Callable[[list[Request]], list[Answer]],
        most: int,
        shared: Callable[[BaseException], bool],
        name: str,
    ) -> None:
        if most < 1:
            raise ValueError("a group writer writes at least one request at a time")
        self._write, self._most, self._shared = write, most, shared
        self._waiting: queue.SimpleQueue[tuple[Request, Future[Answer]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._starting = threading.Lock()
        self._started = False

    def submit(self, request: Request) -> Answer:
        """Write request with the others waiting; returns its answer or raises its failure."""
        answer: Future[Answer] = Future()
        self._waiting.put((request, answer))
        with self._starting:
            if not self._started:
                self._thread.start()
                self._started = True
        return answer.result()

    def _run(self) -> None:
        while True:
            group = [self._waiting.get()]
            while len(group) < self._most:
                try:
                    group.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._answer(group)

    def _answer(self, group: list[tuple[Request, Future[Answer]]]) -> None:
        try:
            answers = self._write([request for request, _ in group])
            if len(answers) != len(group):
                raise ValueError(f"{len(group)} requests were written, {len(answers)} answered")
        except BaseException as exc:  # the thread lives on: every waiting request gets its answer or its failure
            if len(group) > 1 and not self._shared(exc):
                for item in group:
                    self._answer([item])
                return
            for _, answer in group:
                answer.set_exception(exc)
            return
        for (_, answer), result in zip(group, answers, strict=True):
            answer.set_result(result)
