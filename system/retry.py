"""Trying again a call that failed for a reason outside it (a database or broker away), with backoff and jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")
FIRST_PAUSE = 0.1
LONGEST_PAUSE = 5.0


def pauses(first: float = FIRST_PAUSE, longest: float = LONGEST_PAUSE) -> Callable[[int], float]:
    """Exponential backoff with full jitter (AWS's advice): a pause drawn from 0 up to first * 2**n, capped."""
    return lambda n: random.uniform(0, min(longest, first * 2**n))


def retrying(
    call: Callable[[], R],
    transient: Callable[[BaseException], bool],
    for_seconds: float,
    pause: Callable[[int], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """call(), tried again while it raises a transient error and for_seconds have not passed; then that error."""
    pause = pause or pauses()
    deadline = time.monotonic() + for_seconds
    tries = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() >= deadline:
                raise
        sleep(min(pause(tries), max(0.0, deadline - time.monotonic())))
        tries += 1
