"""What `fleet gc` may clear: settled tickets' stored text, unused folders and commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, cast, delete, func, select, update
from sqlalchemy.orm import Session

from db.lifecycle import (
    OPEN_ATTEMPT,
    AttemptStatus,
    TicketStatus,
)
from db.models import Attempt, BudgetHold, ModelCall, Notification, Ticket, Verification

# Tickets whose attempts nobody will run, rank or review again: their stored text can go.
SETTLED_TICKET = (
    TicketStatus.FAILED,
    TicketStatus.ERROR,
    TicketStatus.CANCELLED,
    TicketStatus.APPROVED,
    TicketStatus.REJECTED,
)


def open_attempt_ids(s: Session, attempt_ids: Iterable[int]) -> set[int]:
    """Those of attempt_ids that are waiting or running (their folders are in use or about to be)."""
    ids = list(attempt_ids)
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        query = select(Attempt.id).where(Attempt.id.in_(ids[start : start + 500]), Attempt.status.in_(OPEN_ATTEMPT))
        found.update(s.scalars(query))
    return found


def base_commits(s: Session) -> dict[int, set[str]]:
    """Every ticket's base commit, by repository id."""
    bases: dict[int, set[str]] = {}
    for repo_id, sha in s.execute(select(Ticket.repo_id, Ticket.base_sha).distinct()):
        bases.setdefault(repo_id, set()).add(sha)
    return bases


def clear_attempt_text(s: Session, finished_before: datetime) -> tuple[int, int]:
    """Empty the transcripts, diffs and test outputs of attempts finished before a moment, on settled tickets only,
    and drop what dead gates of theirs held (budget_holds: no longer counted, never let go).

    Rows, verdicts, reasons, feedback and diff stats stay. Returns (attempts cleared, bytes cleared).
    """
    settled = (
        select(Attempt.id)
        .join(Ticket, Ticket.id == Attempt.ticket_id)
        .where(
            Ticket.status.in_([t.value for t in SETTLED_TICKET]),
            Attempt.status.in_([AttemptStatus.FINISHED.value, AttemptStatus.CANCELLED.value]),
            func.coalesce(Attempt.finished_at, Attempt.created_at) < finished_before,
        )
    )
    octets = _octets(s)
    size = octets(Attempt.transcript) + octets(Attempt.diff) + func.coalesce(octets(Verification.output), 0)
    count, total = s.execute(
        select(func.count(), func.coalesce(func.sum(size), 0))
        .select_from(Attempt)
        .outerjoin(Verification, Verification.attempt_id == Attempt.id)
        .where(Attempt.id.in_(settled), size > 0)
    ).one()
    s.execute(update(Attempt).where(Attempt.id.in_(settled)).values(transcript="", diff=""))
    s.execute(update(Verification).where(Verification.attempt_id.in_(settled)).values(output=""))
    s.execute(update(ModelCall).where(ModelCall.attempt_id.in_(settled)).values(request="", response=""))
    s.execute(delete(BudgetHold).where(BudgetHold.attempt_id.in_(settled)))  # of gates whose worker died mid-call
    return int(count), int(total)


def delete_sent_notifications(s: Session, sent_before: datetime) -> int:
    """Drop the outbox's notifications sent before a moment (those still due stay, however old)."""
    result = s.execute(
        delete(Notification).where(Notification.sent_at.is_not(None), Notification.sent_at < sent_before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _octets(s: Session) -> Any:
    """The SQL for a text column's length in bytes on this database."""
    if s.get_bind().dialect.name == "sqlite":
        return lambda column: func.length(cast(column, LargeBinary))
    return func.octet_length
