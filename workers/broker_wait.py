"""A worker's wait for a team broker that does not answer: said every BROKER_SAY_SECONDS, naming the broker's URL
without its password. A worker that stops when idle gives up after FLEET_BROKER_WAIT_SECONDS without an answer,
holding no attempt: the tickets stay queued in the database, and nothing was judged (infrastructure is no verdict)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from celery import Celery

from workers.celery_app import ask_worker_to_stop

BROKER_SAY_SECONDS = 5.0
BROKER_CHECK_SECONDS = 1.0  # while it does not answer
BROKER_ANSWERS_CHECK_SECONDS = 15.0  # while it answers: one short connection each time
GAVE_UP_EXIT_CODE = 1


class BrokerWait:
    """Watches the broker from a thread of its own; gave_up says why the worker stopped, when it did."""

    def __init__(
        self,
        app: Celery,
        shown: str,
        announce: Callable[[str], None],
        give_up_after: float | None,
        busy: Callable[[], int],  # how many attempts this worker holds: it gives up holding none
    ) -> None:
        self.app, self.shown, self.announce = app, shown, announce
        self.give_up_after, self.busy = give_up_after, busy
        self.gave_up = ""

    def watch(self, stopped: threading.Event) -> None:
        """Until stopped: a line while the broker does not answer, one when it answers again, and the stop."""
        down_since: float | None = None
        said_at = 0.0
        while not stopped.is_set():
            problem, now = self.problem(), time.monotonic()
            if problem is None:
                if down_since is not None:
                    self.announce(f"the broker at {self.shown} answers again")
                down_since = None
            else:
                down_since = now if down_since is None else down_since
                if self._give_up(now - down_since, problem):
                    return
                if now - said_at >= BROKER_SAY_SECONDS:
                    self.announce(self._waiting(now - down_since, problem))
                    said_at = now
            stopped.wait(BROKER_CHECK_SECONDS if down_since is not None else BROKER_ANSWERS_CHECK_SECONDS)

    def problem(self) -> str | None:
        """Why the broker does not answer, or None when it does."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=0)
        except Exception as exc:  # refused, timed out, a wrong password: whatever keeps the worker from its messages
            return str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        return None

    def _waiting(self, waited: float, problem: str) -> str:
        then = (
            f"gives up after {self.give_up_after:g}s (FLEET_BROKER_WAIT_SECONDS)"
            if self.give_up_after is not None
            else "waits until it answers (Ctrl-C stops)"
        )
        return f"waiting for the broker at {self.shown} ({waited:.0f}s): {problem}; check FLEET_BROKER_URL; {then}"

    def _give_up(self, waited: float, problem: str) -> bool:
        if self.give_up_after is None or waited < self.give_up_after or self.busy():
            return False
        self.gave_up = (
            f"the broker at {self.shown} did not answer for {waited:.0f}s (FLEET_BROKER_WAIT_SECONDS): {problem}; "
            "check FLEET_BROKER_URL; the tickets stay queued"
        )
        ask_worker_to_stop(code=GAVE_UP_EXIT_CODE)
        return True
