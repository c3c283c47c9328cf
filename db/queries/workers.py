"""Worker heartbeats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.lifecycle import LEASED_ATTEMPT
from db.models import Attempt, Worker, utcnow


def beat(s: Session, worker_id: str, **fields: Any) -> None:
    """Insert or refresh a worker's heartbeat row."""
    worker = s.get(Worker, worker_id)
    if worker is None:
        s.add(Worker(id=worker_id, **fields))
    else:
        for key, value in fields.items():
            setattr(worker, key, value)
        worker.heartbeat_at = utcnow()


def list_workers(s: Session, include_stopped: bool = False) -> Sequence[Worker]:
    query = select(Worker).order_by(Worker.started_at.desc())
    if not include_stopped:
        query = query.where(Worker.stopped_at.is_(None))
    return s.scalars(query).all()


def held_attempts(s: Session) -> dict[str, list[dict[str, Any]]]:
    """What each worker runs now, by worker id: the leased attempts, with their tickets and statuses."""
    query = (
        select(Attempt.lease_owner, Attempt.id, Attempt.ticket_id, Attempt.number, Attempt.status)
        .where(Attempt.status.in_([status.value for status in LEASED_ATTEMPT]), Attempt.lease_owner.is_not(None))
        .order_by(Attempt.id)
    )
    held: dict[str, list[dict[str, Any]]] = {}
    for owner, attempt_id, ticket_id, number, status in s.execute(query).all():
        held.setdefault(str(owner), []).append(
            {"attempt": attempt_id, "ticket": ticket_id, "number": number, "status": status}
        )
    return held
