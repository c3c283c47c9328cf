"""The model calls the gateway metered for an attempt, and the attempt's totals kept in step with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from db.lifecycle import AttemptStatus
from db.modelbase import UTCDateTime
from db.models import Attempt, BudgetHold, ModelCall, Worker, utcnow
from db.usage import MISMATCH, reported_differs

__all__ = [
    "MISMATCH",
    "GateHold",
    "Metered",
    "add_model_call",
    "budget_in_use",
    "hold_budget",
    "let_go_of_dead_gates",
    "lock_budget",
    "metered",
    "model_calls",
    "release_holds",
    "reported_differs",
]

BUDGET_LOCKS = 0x666C74  # the first key of PostgreSQL's advisory locks on budgets; the ticket's id is the second
_TAKE_BUDGET_LOCK = select(func.pg_advisory_xact_lock(BUDGET_LOCKS, bindparam("ticket_id")))
_RUNNING_HOLDS = (
    select(func.coalesce(func.sum(BudgetHold.held_usd), 0.0))
    .join(Attempt, Attempt.id == BudgetHold.attempt_id)
    .where(Attempt.ticket_id == bindparam("ticket_id"), Attempt.status == AttemptStatus.RUNNING.value)
    .scalar_subquery()
)
# Spent and held in one statement, so one snapshot: a call ending between two reads would count in neither.
_IN_USE = select(
    select(func.coalesce(func.sum(Attempt.cost_usd), 0.0))
    .where(Attempt.ticket_id == bindparam("ticket_id"))
    .scalar_subquery(),
    _RUNNING_HOLDS,
)
_FIRST_HOLD = insert(BudgetHold)
_ADD_HOLD = (
    update(BudgetHold)
    .where(BudgetHold.gate == bindparam("own"))
    .values(held_usd=BudgetHold.held_usd + bindparam("usd"), held_at=bindparam("now", type_=UTCDateTime()))
)
_LET_GO = (
    update(BudgetHold)
    .where(BudgetHold.gate == bindparam("own"))
    .values(held_usd=case((BudgetHold.held_usd > bindparam("usd"), BudgetHold.held_usd - bindparam("usd")), else_=0.0))
)
_LIVE_WORKERS = select(Worker.id).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= bindparam("cutoff"))
_DEAD_GATES = delete(BudgetHold).where(
    BudgetHold.attempt_id == bindparam("attempt_id"),
    BudgetHold.gate != bindparam("gate"),
    BudgetHold.held_at < bindparam("cutoff"),
    BudgetHold.worker.not_in(_LIVE_WORKERS),
)
_CLOSED_GATE = delete(BudgetHold).where(BudgetHold.gate == bindparam("gate"))


@dataclass(frozen=True)
class GateHold:
    """Whose holds: one gate of an attempt, on one worker (its heartbeat says whether the gate may still be alive)."""

    gate: str
    attempt_id: int
    worker: str


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


def hold_budget(s: Session, hold: GateHold, usd: float, first: bool) -> None:
    """Count usd against the attempt's ticket's budget until the call that holds it is recorded; the gate's first
    hold writes its row (a gate whose agent calls no model writes none)."""
    if first:
        row = {"gate": hold.gate, "attempt_id": hold.attempt_id, "worker": hold.worker, "held_usd": usd}
        s.execute(_FIRST_HOLD, [row | {"held_at": utcnow()}])
    else:
        s.execute(_ADD_HOLD, {"own": hold.gate, "usd": usd, "now": utcnow()})


def let_go_of_dead_gates(s: Session, hold: GateHold, alive_within: float) -> None:
    """A gate of the attempt opens: what its earlier gates held counts no more when their worker has not beaten and
    they held nothing new for alive_within seconds (the worker died mid-call). A gate still alive (its lease lapsed,
    another worker took the attempt up, its calls still in flight) keeps its holds until its records and close."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    s.execute(_DEAD_GATES, {"attempt_id": hold.attempt_id, "gate": hold.gate, "cutoff": cutoff})


def release_holds(s: Session, hold: GateHold) -> None:
    """The gate has closed: let go of whatever its calls still hold, and only that (a newer gate of the attempt, on
    another worker, keeps what its own calls hold)."""
    s.execute(_CLOSED_GATE, {"gate": hold.gate})


def add_model_call(s: Session, attempt_id: int, held: float = 0.0, gate: str = "", **fields: Any) -> ModelCall:
    """Record one call (numbered after the attempt's last) and add its usage to the attempt's totals at once,
    so a ticket's spend counts the calls of attempts still running (the gateway's budget check reads it); what the
    call held against the budget while in flight is let go in the same transaction (from its gate's row)."""
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
        )
    )
    if held > 0:  # never below zero: a negative hold would pass later calls through a spent budget
        s.execute(_LET_GO, {"own": gate, "usd": held})
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
