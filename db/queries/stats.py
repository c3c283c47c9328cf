"""Counts and sums for fleet status, the stats table and budgets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from db.lifecycle import (
    OPEN_ATTEMPT,
)
from db.models import Attempt, Run, Ticket


def spend(
    s: Session, *, ticket_id: int | None = None, repo_id: int | None = None, since: datetime | None = None
) -> float:
    """Dollars spent by the attempts of one ticket, or of one repository since a moment."""
    query = select(func.coalesce(func.sum(Attempt.cost_usd), 0.0)).join(Ticket, Ticket.id == Attempt.ticket_id)
    if ticket_id is not None:
        query = query.where(Attempt.ticket_id == ticket_id)
    if repo_id is not None:
        query = query.where(Ticket.repo_id == repo_id)
    if since is not None:
        query = query.where(Attempt.created_at >= since)
    return float(s.scalar(query) or 0.0)


def runs_since(s: Session, since: datetime) -> Sequence[Run]:
    """Runs created since a moment, with their attempts, verifications and tickets, for the stats table."""
    query = (
        select(Run)
        .where(Run.created_at >= since)
        .options(selectinload(Run.attempts).selectinload(Attempt.verification), selectinload(Run.ticket))
    )
    return s.scalars(query).all()


def ticket_counts(s: Session) -> dict[str, int]:
    rows = s.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all()
    return {status: count for status, count in rows}


def attempt_counts(s: Session) -> dict[str, int]:
    rows = s.execute(
        select(Attempt.status, func.count()).where(Attempt.status.in_(OPEN_ATTEMPT)).group_by(Attempt.status)
    ).all()
    return {status: count for status, count in rows}
