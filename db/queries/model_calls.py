"""The model calls the gateway metered for an attempt, and the attempt's totals kept in step with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Attempt, ModelCall
from db.usage import MISMATCH, reported_differs

__all__ = ["MISMATCH", "Metered", "add_model_call", "metered", "model_calls", "reported_differs"]


@dataclass(frozen=True)
class Metered:
    """An attempt's model calls summed: what it is billed for, and how many calls had no price."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0


def add_model_call(s: Session, attempt_id: int, **fields: Any) -> ModelCall:
    """Record one call (numbered after the attempt's last) and add its usage to the attempt's totals at once,
    so a ticket's spend counts the calls of attempts still running (the gateway's budget check reads it)."""
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
