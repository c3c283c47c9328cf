"""The fleet's figures, shared by `fleet status` and the web page."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rich.table import Table

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


def render_status(data: dict[str, Any]) -> Table:
    table = Table("what", "count", title="Fleet")
    for status, count in sorted(data["tickets"].items()):
        table.add_row(f"tickets {status}", str(count))
    for status, count in sorted(data["attempts"].items()):
        table.add_row(f"attempts {status}", str(count))
    for queue, depth in data["queues"].items():
        table.add_row(f"queue {queue}", "?" if depth is None else str(depth))
    live = [w for w in data["workers"] if not w["stale"]]
    table.add_row("workers", f"{len(live)} live, {len(data['workers']) - len(live)} stale")
    table.add_row("slots busy", f"{sum(w['busy'] for w in live)} / {sum(w['slots'] for w in live)}")
    return table
