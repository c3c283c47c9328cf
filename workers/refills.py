"""Refill turns: when many agents end at once, their slots do their between-agents work a few at a time.

A hundred agents started together end together. Each slot then takes its diff, cleans its worktree, records the
end, claims its next attempt and starts its sandbox: tens of milliseconds of CPU each, in a hundred threads at
once. Sharing two cores and one interpreter lock among all of them, every slot finished its refill near the end
of the burst, and the agents sat idle for most of it. In turns (first come, first served, a few per core) the
first slots refill at once and the rest follow, so on average a slot waits half the burst instead of all of it,
and the waves that follow spread out instead of repeating.

A slot's first claim and start go in turn as well: the first wave's hundred starts are a burst too. A turn is
given back when the slot's next agent starts or the slot has nothing more to run. A slot that waits for a turn
longer than `longest_wait` goes on without one: a turn held through something slow (a setup command, a first
baseline, a database that does not answer) delays the others by at most that much.
"""

from __future__ import annotations

import threading

TURN_WAIT_SECONDS = 1.0


class RefillTurns:
    """At most `turns` threads hold a turn at once; `take()` waits in line, for at most `longest_wait` seconds."""

    def __init__(self, turns: int, longest_wait: float = TURN_WAIT_SECONDS) -> None:
        if turns < 1:
            raise ValueError("refills need at least one turn")
        self.longest_wait = longest_wait
        self._free = threading.Semaphore(turns)  # its waiters are woken in the order they came
        self._holder = threading.local()

    def take(self) -> bool:
        """Wait for a turn (a no-op when this thread holds one); False when the wait ran out and it goes on without."""
        if self.holding():
            return True
        self._holder.held = self._free.acquire(timeout=self.longest_wait)
        return self._holder.held

    def give_back(self) -> None:
        """Free this thread's turn, if it holds one."""
        if self.holding():
            self._holder.held = False
            self._free.release()

    def holding(self) -> bool:
        """True while this thread holds a turn."""
        return bool(getattr(self._holder, "held", False))
