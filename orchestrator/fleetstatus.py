"""The fleet's figures, shared by `fleet status` and the web page (which each render them)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from db import queries
from db.engine import Database
from db.models import utcnow
from orchestrator import views

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher

STALE_AFTER = timedelta(seconds=60)


def fleet_status(db: Database, dispatcher: Dispatcher | None) -> dict[str, Any]:
    with db.session() as s:
        workers = [
            views.worker_view(w) | {"stale": utcnow() - w.heartbeat_at > STALE_AFTER} for w in queries.list_workers(s)
        ]
        data: dict[str, Any] = {
            "tickets": queries.ticket_counts(s),
            "attempts": queries.attempt_counts(s),
            "workers": workers,
        }
    try:
        data["queues"] = dispatcher.queue_depths() if dispatcher else {}
    except Exception as exc:  # the broker may be down; the database still answers
        data["queues"] = {"error": str(exc)}
    return data


def worker_list(db: Database, include_stopped: bool = False) -> list[dict[str, Any]]:
    """Every worker (live, stale and, on request, stopped) with the attempts it runs now (`fleet workers`)."""
    with db.session() as s:
        held = queries.held_attempts(s)
        return [
            views.worker_view(w) | {"stale": utcnow() - w.heartbeat_at > STALE_AFTER, "running": held.get(w.id, [])}
            for w in queries.list_workers(s, include_stopped=include_stopped)
        ]
