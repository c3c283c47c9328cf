"""Refill turns: a few slots at a time do their between-agents work; a slow turn delays the others a bounded time."""

from __future__ import annotations

import threading

import pytest

from workers.refills import RefillTurns


def _take_in_thread(turns: RefillTurns, keep: bool = True) -> bool:
    """take() from a thread of its own (which keeps its turn unless keep is False); whether it got one."""
    got: list[bool] = []

    def run() -> None:
        got.append(turns.take())
        if not keep:
            turns.give_back()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return got[0]


class Holder:
    """A thread that takes a turn and holds it until let go."""

    def __init__(self, turns: RefillTurns) -> None:
        self.got: list[bool] = []
        self._taken, self._let_go = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(turns,))
        self._thread.start()
        self._taken.wait(timeout=30.0)

    def _run(self, turns: RefillTurns) -> None:
        self.got.append(turns.take())
        self._taken.set()
        self._let_go.wait(timeout=30.0)
        turns.give_back()

    def let_go(self) -> None:
        self._let_go.set()
        self._thread.join(timeout=30.0)


def test_at_most_turns_threads_hold_one_and_a_turn_given_back_is_taken_again() -> None:
    turns = RefillTurns(2, longest_wait=0.05)
    first, second = Holder(turns), Holder(turns)
    assert first.got == second.got == [True]
    assert turns.take() is False  # both are held: this one went on without a turn after the wait
    assert not turns.holding()
    first.let_go()
    assert turns.take() is True
    assert turns.holding()
    turns.give_back()
    second.let_go()


def test_a_thread_that_went_on_without_a_turn_frees_none_of_the_others() -> None:
    turns = RefillTurns(1, longest_wait=0.05)
    assert _take_in_thread(turns) is True  # held for good by a thread that has ended
    assert turns.take() is False
    turns.give_back()  # held nothing: gives nothing back
    assert _take_in_thread(turns) is False


def test_taking_twice_holds_one_turn_and_one_give_back_frees_it() -> None:
    turns = RefillTurns(2, longest_wait=0.05)
    assert turns.take() and turns.take()
    assert turns.holding()
    assert _take_in_thread(turns, keep=False) is True  # the second turn is still free
    turns.give_back()
    assert not turns.holding()
    assert [_take_in_thread(turns), _take_in_thread(turns)] == [True, True]


def test_waiters_get_a_turn_as_soon_as_one_is_given_back() -> None:
    turns = RefillTurns(1, longest_wait=30.0)
    assert turns.take()
    waiting: list[bool] = []
    waiter = threading.Thread(target=lambda: waiting.append(turns.take()))
    waiter.start()
    turns.give_back()
    waiter.join(timeout=30.0)
    assert waiting == [True]


def test_a_worker_needs_at_least_one_turn() -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        RefillTurns(0)
