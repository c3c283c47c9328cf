"""The evaluations' models (`fleet eval`): a task set's run, and each task x agent x sample's ticket."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.modelbase import Base, utcnow

if TYPE_CHECKING:
    from db.models import Ticket


class Evaluation(Base):
    """A named run of a task set: each task x agent x sample is one ticket (EvalEntry)."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    tasks_file: Mapped[str] = mapped_column(Text, default="")
    samples: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    entries: Mapped[list[EvalEntry]] = relationship(back_populates="evaluation", order_by="EvalEntry.id")


class EvalEntry(Base):
    """One task x agent x sample of an evaluation, and the ticket that ran it."""

    __tablename__ = "eval_entries"
    __table_args__ = (UniqueConstraint("evaluation_id", "instance_id", "agent", "sample"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"))
    instance_id: Mapped[str] = mapped_column(String(200))
    agent: Mapped[str] = mapped_column(String(200))  # the label the report groups by
    model: Mapped[str] = mapped_column(String(200), default="")
    sample: Mapped[int] = mapped_column(Integer)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    fail_to_pass: Mapped[list[Any]] = mapped_column(default=list)
    pass_to_pass: Mapped[list[Any]] = mapped_column(default=list)

    evaluation: Mapped[Evaluation] = relationship(back_populates="entries")
    ticket: Mapped[Ticket] = relationship()
