"""The model calls the gateway metered for an attempt, and the attempt's totals kept in step with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from db.lifecycle import AttemptStatus
from db.models import Attempt, ModelCall
from db.usage import MISMATCH, reported_differs

__all__ = [
    "MISMATCH",
    "Metered",
    "add_model_call",
    "budget_in_use",
    "clear_holds",
    "hold_budget",
    "lock_budget",
    "metered",
    "model_calls",
    "release_holds",
    "reported_differs",
]

BUDGET_LOCKS = 0x666C74  # the first key of PostgreSQL's advisory locks on budgets; the ticket's id is the second
_TAKE_BUDGET_LOCK = select(func.pg_advisory_xact_lock(BUDGET_LOCKS, bindparam("ticket_id")))
# Spent and held in one statement, so one snapshot: a call ending between two reads would count in neither.
_IN_USE = select(
    func.coalesce(func.sum(Attempt.cost_usd), 0.0),
    func.coalesce(func.sum(case((Attempt.status == AttemptStatus.RUNNING.value, Attempt.held_usd), else_=0.0)), 0.0),
).where(Attempt.ticket_id == bindparam("ticket_id"))


@dataclass(frozen=True)
class Metered:
    """An attempt's model calls summed: what it is billed for, and how many calls had no price."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0


def lock_budget(s: Session, ticket_id: int) -> None:
    """Let one call at a time of the ticket read its budget and hold part of it (SQLite's write lock is already
    held: BEGIN IMMEDIATE; PostgreSQL takes a lock for the transaction)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_TAKE_BUDGET_LOCK, {"ticket_id": ticket_id})


def budget_in_use(s: Session, ticket_id: int) -> tuple[float, float]:
    """What the ticket's attempts spent, and what the calls in flight of its running attempts hold, on any worker
    (an attempt that stopped running holds nothing, whatever a worker that died left written)."""
    spent, held = s.execute(_IN_USE, {"ticket_id": ticket_id}).one()
    return float(spent), float(held)


def hold_budget(s: Session, attempt_id: int, usd: float) -> None:
    """Count usd against the attempt's ticket's budget until the call that holds it is recorded."""
    s.execute(update(Attempt).where(Attempt.id == attempt_id).values(held_usd=Attempt.held_usd + usd))


def clear_holds(s: Session, attempt_id: int) -> None:
    """The attempt holds nothing: its gate opens, and what an earlier run of it held (its worker stopped mid-call)
    counts no more."""
    s.execute(update(Attempt).where(Attempt.id == attempt_id, Attempt.held_usd != 0).values(held_usd=0.0))


def release_holds(s: Session, attempt_id: int, usd: float) -> None:
    """Let go of usd the attempt's calls held and no record let go of: their gate has closed. Only that much, in one
    statement: a newer gate of the attempt (its lease lapsed, another worker took it up) keeps its own calls' holds."""
    s.execute(update(Attempt).where(Attempt.id == attempt_id).values(held_usd=_held_less(usd)))


def _held_less(usd: float) -> ColumnElement[float]:
    """The attempt's holds less usd, never below zero: a new gate of the attempt let go of every hold already, and a
    negative one would pass later calls through a spent budget."""
    return case((Attempt.held_usd > usd, Attempt.held_usd - usd), else_=0.0)


def add_model_call(s: Session, attempt_id: int, held: float = 0.0, **fields: Any) -> ModelCall:
    """Record one call (numbered after the attempt's last) and add its usage to the attempt's totals at once,
    so a ticket's spend counts the calls of attempts still running (the gateway's budget check reads it); what the
    call held against the budget while in flight is let go in the same write."""
    seq = (s.scalar(select(func.max(ModelCall.seq)).where(ModelCall.attempt_id == attempt_id)) or 0) + 1
    call = ModelCall(attempt_id=attempt_id, seq=seq, **fields)
    s.add(call)
    unpriced = call.cost_usd is None and (call.input_tokens or call.output_tokens) > 0
    s.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id)
        .values(
            tokens_in=Attempt.tokens_in + (call.input_tokens or 0),
            tokens_out=Attempt.tokens_out + (call.output_tokens or 0),
            cost_usd=Attempt.cost_usd + (call.cost_usd or 0.0),
            unpriced_calls=Attempt.unpriced_calls + int(unpriced),
            held_usd=_held_less(held),
        )
    )
    s.flush()
    return call


def model_calls(s: Session, attempt_id: int) -> Sequence[ModelCall]:
    """The attempt's calls in the order they were made."""
    return s.scalars(select(ModelCall).where(ModelCall.attempt_id == attempt_id).order_by(ModelCall.seq)).all()


def metered(s: Session, attempt_id: int) -> Metered:
    """The sums of the attempt's calls (every delivery of the attempt: each call was billed)."""
    unpriced = (ModelCall.cost_usd.is_(None)) & ((ModelCall.input_tokens + ModelCall.output_tokens) > 0)
    row = s.execute(
        select(
            func.count(ModelCall.id),
            func.coalesce(func.sum(ModelCall.input_tokens), 0),
            func.coalesce(func.sum(ModelCall.output_tokens), 0),
            func.coalesce(func.sum(ModelCall.cost_usd), 0.0),
            func.count(ModelCall.id).filter(unpriced),
        ).where(ModelCall.attempt_id == attempt_id)
    ).one()
    return Metered(int(row[0]), int(row[1]), int(row[2]), float(row[3] or 0.0), int(row[4]))
