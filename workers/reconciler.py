"""The reconciler: re-sends attempts whose lease expired or whose message never arrived. No ticket is lost."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from db import queries
from db.engine import Database
from system.settings import Settings
from workers.merge_queue import advance_all
from workers.scheduler import schedule

if TYPE_CHECKING:
    from workers.queue import Dispatcher

log = logging.getLogger(__name__)


def reconcile(db: Database, dispatcher: Dispatcher, settings: Settings, redispatch_seconds: float) -> int:
    """One pass: expired leases go back in line, lost messages are sent again, free slots are filled."""
    with db.session() as s:
        waiting = queries.expire_leases(s) + queries.undelivered(s, redispatch_seconds)
    if waiting:
        log.info("reconciler re-sends %d attempt(s)", len(waiting))
    sent = dispatcher.send(waiting) + schedule(db, dispatcher, settings)
    return sent + advance_all(db, settings, dispatcher.send_builds, dispatcher.send, redispatch_seconds)


class ReconcilerThread(threading.Thread):
    """Runs reconcile() every interval until stopped; a failed pass is logged and retried next time."""

    def __init__(self, db: Database, dispatcher: Dispatcher, settings: Settings) -> None:
        super().__init__(name="fleet-reconciler", daemon=True)
        self.db, self.dispatcher, self.settings = db, dispatcher, settings
        self.interval, self.redispatch_seconds = settings.reconcile_seconds, settings.redispatch_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                reconcile(self.db, self.dispatcher, self.settings, self.redispatch_seconds)
            except Exception:
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self.stopped.set()
