"""The control plane's reconciler passes, run by the workers' reconciler thread through the composition root:
notifications every tick; pull request feedback and issue import every FLEET_FORGE_POLL_SECONDS."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from db.engine import Database, log_failure
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher

log = logging.getLogger(__name__)


class ForgePasses:
    """Called by the reconciler with its dispatcher; a failed step is logged and tried again next time."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.polled_at: float | None = None

    def __call__(self, dispatcher: Dispatcher) -> None:
        # Imported at the first pass, a reconciler interval after the worker starts: not before its first agent.
        from orchestrator import imports, notify, pr_feedback

        self._guarded("sending notifications", lambda: notify.send_due(self.db, self.settings))
        now = time.monotonic()
        if self.polled_at is not None and now - self.polled_at < self.settings.forge_poll_seconds:
            return
        self.polled_at = now
        self._guarded("reading pull requests", lambda: pr_feedback.poll(self.db, dispatcher, self.settings))
        self._guarded("importing issues", lambda: imports.import_pass(self.db, dispatcher, self.settings))

    def _guarded(self, what: str, step: object) -> None:
        try:
            step()  # type: ignore[operator]
        except Exception as exc:  # the unit-of-work boundary of a pass: the reconciler must keep running
            log_failure(log, what, exc)
