"""Registered repositories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.errors import unknown_repo
from db.models import (
    Attempt,
    Baseline,
    Event,
    ForgeSeen,
    ModelCall,
    Notification,
    Repo,
    Review,
    Run,
    Ticket,
    Verification,
)
from db.queries.errors import AlreadyExists


def add_repo(s: Session, **fields: Any) -> Repo:
    if s.scalar(select(Repo).where(Repo.name == fields["name"])):
        raise AlreadyExists(f"repo {fields['name']!r} is already registered")
    repo = Repo(**fields)
    s.add(repo)
    s.flush()
    return repo


def get_repo(s: Session, name: str) -> Repo:
    repo = s.scalar(select(Repo).where(Repo.name == name))
    if repo is None:
        raise unknown_repo(name, s.scalars(select(Repo.name).order_by(Repo.name)).all())
    return repo


def list_repos(s: Session, limit: int | None = None, after: str | None = None) -> Sequence[Repo]:
    """Repositories by name; a page of `limit` after the name `after` (its unique index's range, never an offset)."""
    query = select(Repo).order_by(Repo.name).limit(limit)
    if after is not None:
        query = query.where(Repo.name > after)
    return s.scalars(query).all()


def update_repo(s: Session, name: str, **fields: Any) -> Repo:
    repo = get_repo(s, name)
    for key, value in fields.items():
        setattr(repo, key, value)
    s.flush()
    return repo


def delete_repo(s: Session, name: str) -> int:
    """Delete a repository with every ticket it had and what they left; returns how many tickets went."""
    repo = get_repo(s, name)
    tickets = select(Ticket.id).where(Ticket.repo_id == repo.id)
    attempts = select(Attempt.id).where(Attempt.ticket_id.in_(tickets))
    count = len(s.scalars(tickets).all())
    s.execute(delete(Event).where(Event.ticket_id.in_(tickets) | Event.attempt_id.in_(attempts)))
    s.execute(delete(Review).where(Review.ticket_id.in_(tickets)))
    s.execute(delete(ForgeSeen).where(ForgeSeen.repo_id == repo.id))
    s.execute(delete(Notification).where(Notification.repo_id == repo.id))
    s.execute(delete(Verification).where(Verification.attempt_id.in_(attempts)))
    s.execute(delete(ModelCall).where(ModelCall.attempt_id.in_(attempts)))
    s.execute(delete(Attempt).where(Attempt.ticket_id.in_(tickets)))
    s.execute(delete(Run).where(Run.ticket_id.in_(tickets)))
    s.execute(delete(Ticket).where(Ticket.repo_id == repo.id))
    s.execute(delete(Baseline).where(Baseline.repo_id == repo.id))
    s.delete(repo)
    s.flush()
    return count
