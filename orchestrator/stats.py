"""`fleet stats`: per agent and model, how often it gets to a verified diff and at what price."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

from db import queries
from db.engine import Database
from db.lifecycle import RunStatus
from db.models import utcnow
from db.queries import RunFigures


def _row(agent: str, model: str, runs: list[RunFigures]) -> dict[str, Any]:
    passed = [r for r in runs if r.status == RunStatus.PASSED.value]
    ended = [r for r in runs if r.status != RunStatus.ACTIVE.value]
    attempts = sum(r.attempts for r in runs)
    cost = sum(r.cost_usd for r in runs)
    times = [(r.finished_at - r.created_at).total_seconds() for r in passed if r.finished_at]
    return {
        "agent": agent,
        "model": model,
        "tickets": len({r.ticket_id for r in runs}),
        "runs": len(runs),
        "verified": len(passed),
        "verified_rate": round(len(passed) / len(ended), 3) if ended else None,
        "attempts_per_verified": round(attempts / len(passed), 2) if passed else None,
        "cost_per_verified_usd": round(cost / len(passed), 4) if passed else None,
        "median_seconds_to_verified": round(statistics.median(times), 1) if times else None,
        "cost_usd": round(cost, 4),
    }


def agent_stats(db: Database, hours: float) -> list[dict[str, Any]]:
    """One row per (agent, model) over runs created in the last `hours`."""
    with db.session() as s:
        groups: dict[tuple[str, str], list[RunFigures]] = defaultdict(list)
        for run in queries.runs_since(s, utcnow() - timedelta(hours=hours)):
            groups[(run.agent, run.model)].append(run)
        return [_row(agent, model, runs) for (agent, model), runs in sorted(groups.items())]
