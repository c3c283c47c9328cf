"""The dashboard's figures: `fleet status` plus running attempts, time series, review backlog and spend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from db import dashboard
from db.engine import Database
from db.lifecycle import Verdict
from db.models import utcnow
from orchestrator.dispatch import Dispatcher
from orchestrator.fleetstatus import fleet_status
from orchestrator.stats import agent_stats


@dataclass(frozen=True)
class Bucket:
    """Verifications that ended in one time slot, and how many of them passed."""

    start: datetime
    total: int
    passed: int


def buckets(rows: list[tuple[datetime, str]], now: datetime, width: timedelta, count: int) -> list[Bucket]:
    """`count` slots of `width` ending at now, oldest first."""
    start = now - width * count
    totals, passes = [0] * count, [0] * count
    for created, verdict in rows:
        index = int((created - start) / width)
        if 0 <= index < count:
            totals[index] += 1
            passes[index] += verdict == Verdict.PASSED.value
    return [Bucket(start + width * i, totals[i], passes[i]) for i in range(count)]


def series(db: Database, now: datetime | None = None) -> dict[str, list[Bucket]]:
    """Last hour in 5-minute slots and last day in hourly slots."""
    now = now or utcnow()
    with db.session() as s:
        rows = dashboard.verdicts_since(s, now - timedelta(days=1))
    return {
        "hour": buckets(rows, now, timedelta(minutes=5), 12),
        "day": buckets(rows, now, timedelta(hours=1), 24),
    }


def _rate(points: list[Bucket]) -> dict[str, Any]:
    total, passed = sum(b.total for b in points), sum(b.passed for b in points)
    # "verifications", not "verified": every verification run counts here, passed or not.
    return {"verifications": total, "passed": passed, "pass_rate": round(passed / total, 3) if total else None}


def running(db: Database) -> list[dict[str, Any]]:
    now = utcnow()
    with db.session() as s:
        return [
            {
                "attempt": a.id,
                "ticket": a.ticket_id,
                "title": a.run.ticket.title,
                "agent": a.run.agent,
                "status": a.status,
                "owner": a.lease_owner,
                "elapsed_seconds": round((now - a.started_at).total_seconds(), 1) if a.started_at else None,
            }
            for a in dashboard.running_attempts(s)
        ]


def stats(db: Database, dispatcher: Dispatcher, points: dict[str, list[Bucket]] | None = None) -> dict[str, Any]:
    """Everything the Fleet page and /api/stats show; points: series() read already (the page's charts), so the
    charts and the rates come from one read."""
    now = utcnow()
    data = fleet_status(db, dispatcher)
    points = points if points is not None else series(db, now)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with db.session() as s:
        backlog, oldest = dashboard.review_backlog(s)
        spend_today = dashboard.spend_since(s, midnight)
        verdicts = dashboard.totals(s).verdicts
    data.update(
        running=running(db),
        last_hour=_rate(points["hour"]),
        last_day=_rate(points["day"]),
        review_backlog={
            "count": backlog,
            "oldest_at": oldest.isoformat() if oldest else None,
            "oldest_age_seconds": round((now - oldest).total_seconds()) if oldest else None,
        },
        spend_today_usd=round(spend_today, 4),
        verdicts=verdicts,
        agents=agent_stats(db, 24),
        now=now.isoformat(),
    )
    return data
