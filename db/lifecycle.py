"""Statuses and verdicts, rendered the same by the CLI and the web page; transition() refuses illegal moves."""

from __future__ import annotations

from enum import Enum


class TicketStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    APPROVED = "approved"
    REJECTED = "rejected"


class RunStatus(str, Enum):
    ACTIVE = "active"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"


class AttemptStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    VERIFY_QUEUED = "verify_queued"
    VERIFYING = "verifying"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class Verdict(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    GAMED = "gamed"
    ERROR = "error"


class IllegalTransition(Exception):
    """A status change that the state machine does not allow."""

    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"{kind} cannot go from {old} to {new}")
        self.old, self.new = old, new


TICKET_MOVES: dict[TicketStatus, set[TicketStatus]] = {
    TicketStatus.QUEUED: {TicketStatus.RUNNING, TicketStatus.CANCELLED, TicketStatus.ERROR},
    TicketStatus.RUNNING: {
        TicketStatus.QUEUED,
        TicketStatus.NEEDS_REVIEW,
        TicketStatus.FAILED,
        TicketStatus.ERROR,
        TicketStatus.CANCELLED,
    },
    TicketStatus.NEEDS_REVIEW: {TicketStatus.APPROVED, TicketStatus.REJECTED, TicketStatus.CANCELLED},
    TicketStatus.REJECTED: {TicketStatus.QUEUED, TicketStatus.CANCELLED},
    TicketStatus.FAILED: {TicketStatus.QUEUED},
    TicketStatus.ERROR: {TicketStatus.QUEUED},
    TicketStatus.CANCELLED: {TicketStatus.QUEUED},
    TicketStatus.APPROVED: set(),
}

ACTIVE_TICKET = (TicketStatus.QUEUED, TicketStatus.RUNNING)
WAITING_ATTEMPT = (AttemptStatus.QUEUED, AttemptStatus.VERIFY_QUEUED)
LEASED_ATTEMPT = (AttemptStatus.RUNNING, AttemptStatus.VERIFYING)
OPEN_ATTEMPT = WAITING_ATTEMPT + LEASED_ATTEMPT


def ticket_transition(old: TicketStatus, new: TicketStatus) -> TicketStatus:
    """Return new if a ticket may move from old to it, else raise IllegalTransition."""
    if old != new and new not in TICKET_MOVES[old]:
        raise IllegalTransition("ticket", old.value, new.value)
    return new
