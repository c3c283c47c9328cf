"""Counts and sums for fleet status, the stats table and budgets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from db.lifecycle import (
    OPEN_ATTEMPT,
)
from db.models import Attempt, Run, Ticket

# Built once: `fleet up` asks for these every second (fleet/cli/progress.py).
_SPEND = select(func.coalesce(func.sum(Attempt.cost_usd), 0.0))
_TICKET_COUNTS = select(Ticket.status, func.count()).group_by(Ticket.status)
_OPEN_ATTEMPT_COUNTS = (
    select(Attempt.status, func.count()).where(Attempt.status.in_(OPEN_ATTEMPT)).group_by(Attempt.status)
)


def spend(
    s: Session | Connection,
    *,
    ticket_id: int | None = None,
    repo_id: int | None = None,
    since: datetime | None = None,
) -> float:
    """Dollars spent by the attempts of one ticket, or of one repository since a moment (or in all: what `fleet up`
    shows every second, so the tickets are joined only to filter by repository)."""
    query = _SPEND
    if ticket_id is not None:
        query = query.where(Attempt.ticket_id == ticket_id)
    if repo_id is not None:
        query = query.join(Ticket, Ticket.id == Attempt.ticket_id).where(Ticket.repo_id == repo_id)
    if since is not None:
        query = query.where(Attempt.created_at >= since)
    return float(s.scalar(query) or 0.0)


@dataclass(frozen=True)
class RunFigures:
    """What the stats table needs of one run: its columns, its ticket's model, its attempts' count and cost."""

    agent: str
    model: str
    status: str
    ticket_id: int
    created_at: datetime
    finished_at: datetime | None
    attempts: int
    cost_usd: float


def runs_since(s: Session, since: datetime) -> list[RunFigures]:
    """The runs created since a moment, as plain rows: one query, each run's attempts counted and summed through
    the attempts' run index (a join would make PostgreSQL hash every attempt of the history)."""
    of_run = Attempt.run_id == Run.id
    attempts = select(func.count(Attempt.id)).where(of_run).scalar_subquery()
    cost = select(func.coalesce(func.sum(Attempt.cost_usd), 0.0)).where(of_run).scalar_subquery()
    query = (
        select(
            Run.agent, Ticket.agent_options, Run.status, Run.ticket_id, Run.created_at, Run.finished_at, attempts, cost
        )
        .join(Ticket, Ticket.id == Run.ticket_id)
        .where(Run.created_at >= since)
    )
    return [
        RunFigures(agent, str((options or {}).get("model") or "-"), status, ticket, created, finished, n, float(cost))
        for agent, options, status, ticket, created, finished, n, cost in s.execute(query)
    ]


def ticket_counts(s: Session | Connection) -> dict[str, int]:
    return {status: count for status, count in s.execute(_TICKET_COUNTS).all()}


def attempt_counts(s: Session | Connection) -> dict[str, int]:
    """The open attempts (waiting or at work) by status."""
    return {status: count for status, count in s.execute(_OPEN_ATTEMPT_COUNTS).all()}
