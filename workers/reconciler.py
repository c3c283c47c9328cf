"""The reconciler: re-sends attempts whose lease expired or whose message never arrived. No ticket is lost.

It also makes recovery from a lost broker a matter of seconds: a waiting attempt that nobody took while workers
have free slots is sent again after FLEET_RESEND_IDLE_SECONDS, and every waiting attempt is sent again at once when
the broker answers after being away or comes back empty (workers.queue.Dispatcher.broker_fresh); one that a worker
is claiming at that moment is left to the next pass (db.queries.leases.undelivered).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from db import queries
from db.engine import Database, log_failure, transient
from system.settings import Settings
from workers.merge_queue import advance_all
from workers.scheduler import schedule

if TYPE_CHECKING:
    from workers.queue import Dispatcher

log = logging.getLogger(__name__)
BROKER_CHECK_SECONDS = 1.0
# How long a stopping worker waits for a pass in flight: a notification claimed and not yet posted (a webhook
# answers within notify.TIMEOUT_SECONDS) would otherwise count a try and wait out its hold before it is sent.
STOP_WAIT_SECONDS = 12.0
# A pass the composition root adds (the control plane's: notifications, PR feedback, issue import).
Pass = Callable[[Any], object]


def reconcile(
    db: Database, dispatcher: Dispatcher, settings: Settings, redispatch_seconds: float, expire: bool = True
) -> int:
    """One pass: expired leases go back in line, lost messages are sent again, free slots are filled."""
    with db.session() as s:
        waiting = (queries.expire_leases(s) if expire else []) + queries.undelivered(s, redispatch_seconds)
        stale = 3 * settings.heartbeat_seconds + settings.reconcile_seconds
        idle = queries.live_slots(s, stale_seconds=stale) - queries.count_leased(s) - len(waiting)
        waiting += queries.unclaimed(s, settings.resend_idle_seconds, idle)
    if waiting:
        log.info("reconciler re-sends %d attempt(s)", len(waiting))
    sent = dispatcher.send(waiting) + schedule(db, dispatcher, settings)
    return sent + advance_all(db, settings, dispatcher.send_builds, dispatcher.send, redispatch_seconds)


class ReconcilerThread(threading.Thread):
    """Runs reconcile() every interval until stopped; a failed pass is logged and retried next time.

    After the database was away, leases are not expired for one lease period: the workers that held them could
    not renew them either, and are renewing them now.
    """

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        settings: Settings,
        passes: Sequence[Pass] = (),
        before: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(name="fleet-reconciler", daemon=True)
        self.db, self.dispatcher, self.settings, self.passes = db, dispatcher, settings, tuple(passes)
        self.interval, self.redispatch_seconds = settings.reconcile_seconds, settings.redispatch_seconds
        self.before = before
        self.stopped = threading.Event()
        self.database_away = False
        self.expire_after = 0.0

    def run(self) -> None:
        next_pass = time.monotonic() + self.interval
        while not self.stopped.wait(min(self.interval, BROKER_CHECK_SECONDS)):
            fresh = self._broker_fresh()
            if fresh:
                log.warning("the broker answers again: every waiting attempt is sent again")
            elif time.monotonic() < next_pass:
                continue
            next_pass = time.monotonic() + self.interval
            self._pass(0.0 if fresh else self.redispatch_seconds)

    def _broker_fresh(self) -> bool:
        try:
            return self.dispatcher.broker_fresh()
        except Exception:
            log.exception("broker check failed")
            return False

    def _pass(self, redispatch_seconds: float) -> None:
        try:
            if self.before is not None:
                self.before()
            expire = not self.database_away and time.monotonic() >= self.expire_after
            reconcile(self.db, self.dispatcher, self.settings, redispatch_seconds, expire=expire)
        except Exception as exc:
            if not transient(exc):
                log.exception("reconciler pass failed")
                return
            log.warning("reconciler: database unreachable (%s); retrying", type(exc).__name__)
            self.database_away = True
            return
        if self.database_away:  # back: give the lease holders a lease period to renew before expiring any
            self.database_away = False
            self.expire_after = time.monotonic() + self.settings.lease_seconds
        for extra in self.passes:
            try:
                extra(self.dispatcher)
            except Exception as exc:
                log_failure(log, f"reconciler pass {extra!r}", exc)

    def stop(self) -> None:
        """No more passes; the pass in flight, if any, finishes first (for STOP_WAIT_SECONDS at most)."""
        self.stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(STOP_WAIT_SECONDS)
