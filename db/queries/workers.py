"""Worker heartbeats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Worker, utcnow


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
