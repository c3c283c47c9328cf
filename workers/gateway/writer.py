"""A gate's writer: the meter's database work, in order, on one thread started by the gate's first such work.

Every attempt opens a gate, and most of a fleet's agents (a command, a scripted agent) call no model through it: a
thread started and joined for each of them cost the worker about 0.2 ms of CPU a ticket, for nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class GateWriter(Executor):
    """One thread, started by the first submit(); shutdown() joins it when there is one."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-gateway-meter")
            return self._pool.submit(fn, *args, **kwargs)

    def submit_if_started(self, fn: Callable[[], Any]) -> None:
        """fn after the work submitted so far, when there is any; nothing (fn not run) otherwise."""
        with self._lock:
            if self._pool is not None:
                self._pool.submit(fn)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
