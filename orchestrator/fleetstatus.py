"""The fleet's figures, shared by `fleet status` and the web page (which each render them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db import queries
from db.engine import Database
from db.models import utcnow
from orchestrator import views
from orchestrator.views import STALE_AFTER

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher


def fleet_status(db: Database, dispatcher: Dispatcher | None) -> dict[str, Any]:
    """The figures through the ORM (the web); `fleet status` reads the same through db/reads.py."""
    with db.session() as s:
        counts = queries.ticket_counts(s), queries.attempt_counts(s)
        workers = queries.list_workers(s)
    return views.fleet_figures(*counts, workers, dispatcher)


def worker_list(db: Database, include_stopped: bool = False) -> list[dict[str, Any]]:
    """Every worker (live, stale and, on request, stopped) with the attempts it runs now (`fleet workers`)."""
    with db.session() as s:
        held = queries.held_attempts(s)
        return [
            views.worker_view(w) | {"stale": utcnow() - w.heartbeat_at > STALE_AFTER, "running": held.get(w.id, [])}
            for w in queries.list_workers(s, include_stopped=include_stopped)
        ]
