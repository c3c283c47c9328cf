"""Per-key baseline locks: one lock per key while in use, none kept after, so a long-lived worker never grows."""

from __future__ import annotations

import threading
import time

from workers.runtime import KeyedLocks


def test_locks_are_forgotten_once_nobody_holds_them() -> None:
    locks = KeyedLocks()
    for n in range(1000):
        with locks.hold(f"repo:{n}"):
            assert len(locks) == 1
    assert len(locks) == 0


def test_one_key_is_one_lock_while_in_use_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def first() -> None:
        with locks.hold("k"):
            order.append("first in")
            first_in.set()
            release.wait(5)
            order.append("first out")

    def second() -> None:
        with locks.hold("k"):
            order.append("second in")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(5)
    waiter = threading.Thread(target=second)
    waiter.start()
    with locks.hold("other"):  # a different key goes ahead at once
        time.sleep(0.2)
        assert len(locks) == 2 and order == ["first in"]
    release.set()
    holder.join(5)
    waiter.join(5)
    assert order == ["first in", "first out", "second in"]
    assert len(locks) == 0
