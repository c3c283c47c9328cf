"""Evaluations (named task-set runs) and the finished attempts `fleet export` reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from db.models import Attempt, EvalEntry, Evaluation, Review, Run, Ticket
from db.queries.errors import AlreadyExists, NotFound


def add_evaluation(s: Session, name: str, tasks_file: str, samples: int, actor: str) -> Evaluation:
    if s.scalar(select(Evaluation.id).where(Evaluation.name == name)) is not None:
        raise AlreadyExists(f"an evaluation named {name!r} exists already (pick another --name)")
    evaluation = Evaluation(name=name, tasks_file=tasks_file, samples=samples, created_by=actor)
    s.add(evaluation)
    s.flush()
    return evaluation


def get_evaluation(s: Session, name: str) -> Evaluation:
    """The evaluation with its entries, their tickets, runs, attempts and verifications loaded."""
    query = (
        select(Evaluation)
        .where(Evaluation.name == name)
        .options(
            selectinload(Evaluation.entries)
            .selectinload(EvalEntry.ticket)
            .selectinload(Ticket.runs)
            .selectinload(Run.attempts)
            .selectinload(Attempt.verification)
        )
    )
    found = s.scalar(query)
    if found is None:
        raise NotFound(f"no evaluation named {name!r} (fleet eval list shows them)")
    return found


def list_evaluations(s: Session) -> Sequence[Evaluation]:
    return s.scalars(select(Evaluation).order_by(Evaluation.created_at.desc(), Evaluation.id.desc())).all()


def finished_attempts(s: Session, since: datetime) -> Sequence[Attempt]:
    """Attempts finished since a moment, with their run, ticket, repository and verification."""
    query = (
        select(Attempt)
        .where(Attempt.finished_at >= since)
        .order_by(Attempt.ticket_id, Attempt.run_id, Attempt.number)
        .options(selectinload(Attempt.verification), selectinload(Attempt.run).selectinload(Run.ticket))
    )
    return s.scalars(query).all()


def attempt_reviews(s: Session, attempt_ids: Sequence[int]) -> dict[int, list[Review]]:
    """The reviews of each of attempt_ids, oldest first."""
    found: dict[int, list[Review]] = {}
    if attempt_ids:
        query = select(Review).where(Review.attempt_id.in_(attempt_ids)).order_by(Review.id)
        for review in s.scalars(query):
            found.setdefault(review.attempt_id, []).append(review)
    return found
