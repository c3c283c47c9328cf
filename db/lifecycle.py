"""Statuses, their transition tables, and the one way to write a status: move() for a row, bulk() for an UPDATE.

The CLI and the web page render the same enums; every status write in Fleet goes through this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar


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


class MergeStatus(str, Enum):
    """A merge queue entry: waiting for a build, its build being verified, its verdict, and how it left."""

    WAITING = "waiting"
    BUILDING = "building"
    PASSED = "passed"
    FAILED = "failed"
    MERGED = "merged"
    EJECTED = "ejected"


class Verdict(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    GAMED = "gamed"
    ERROR = "error"


S = TypeVar("S", TicketStatus, RunStatus, AttemptStatus, MergeStatus)


class IllegalTransition(Exception):
    """A status change that the transition tables do not allow."""

    def __init__(self, kind: str, old: str, new: str, message: str = "") -> None:
        super().__init__(message or f"{kind} cannot go from {old} to {new}")
        self.kind, self.old, self.new = kind, old, new


@dataclass(frozen=True)
class Edge(Generic[S]):
    """One legal move, named by the action that makes it."""

    action: str
    source: S
    target: S


@dataclass(frozen=True)
class Table(Generic[S]):
    """The legal moves of one kind of row, and the status a new row starts in."""

    kind: str
    initial: S
    edges: tuple[Edge[S], ...]

    def exits(self, source: S) -> set[S]:
        return {e.target for e in self.edges if e.source == source}

    def sources(self, target: S, action: str | None = None) -> tuple[S, ...]:
        """The statuses a row may leave for target (by action, when named), in the table's order."""
        found = [e.source for e in self.edges if e.target == target and action in (None, e.action)]
        return tuple(dict.fromkeys(found))

    def moves(self, action: str) -> dict[S, S]:
        """Source to target of every move action makes (a lease expiry puts each leased status back in line)."""
        return {e.source: e.target for e in self.edges if e.action == action}

    def check(self, old: S, new: S) -> S:
        """Return new if a row may move from old to it (staying put is no move), else raise IllegalTransition."""
        if old != new and new not in self.exits(old):
            raise IllegalTransition(self.kind, old.value, new.value)
        return new


def _edges(action: str, sources: Iterable[S], target: S) -> tuple[Edge[S], ...]:
    return tuple(Edge(action, source, target) for source in sources)


_T = TicketStatus
TICKET = Table(
    "ticket",
    _T.QUEUED,
    (
        *_edges("start", [_T.QUEUED], _T.RUNNING),
        # its last running attempt went back in line with no verdict (its worker stopped, or its lease lapsed)
        *_edges("hand_back", [_T.RUNNING], _T.QUEUED),
        *_edges("settle", [_T.RUNNING], _T.NEEDS_REVIEW),
        *_edges("settle", [_T.RUNNING], _T.FAILED),
        *_edges("settle", [_T.QUEUED, _T.RUNNING], _T.ERROR),
        *_edges("approve", [_T.NEEDS_REVIEW], _T.APPROVED),
        *_edges("reject", [_T.NEEDS_REVIEW], _T.REJECTED),
        *_edges("eject", [_T.APPROVED], _T.REJECTED),  # the merge queue sends the diff back with feedback
        *_edges("reopen", [_T.REJECTED, _T.APPROVED], _T.QUEUED),  # a reviewer's feedback, or the PR's
        *_edges("retry", [_T.FAILED, _T.ERROR, _T.CANCELLED, _T.REJECTED], _T.QUEUED),
        *_edges("cancel", [_T.QUEUED, _T.RUNNING, _T.NEEDS_REVIEW, _T.REJECTED], _T.CANCELLED),
    ),
)

_R = RunStatus
_ENDED_RUN = (_R.PASSED, _R.FAILED, _R.ERROR, _R.CANCELLED)
RUN = Table(
    "run",
    _R.ACTIVE,
    (
        *(edge for end in _ENDED_RUN for edge in _edges("finish", [_R.ACTIVE], end)),
        *_edges("reopen", _ENDED_RUN, _R.ACTIVE),  # a retry, or a reviewer's rejection with feedback
    ),
)

_A = AttemptStatus
ATTEMPT = Table(
    "attempt",
    _A.QUEUED,
    (
        Edge("claim", _A.QUEUED, _A.RUNNING),
        Edge("claim", _A.VERIFY_QUEUED, _A.VERIFYING),
        Edge("expire", _A.RUNNING, _A.QUEUED),  # the lease ran out: back in line for another worker
        Edge("expire", _A.VERIFYING, _A.VERIFY_QUEUED),
        Edge("hand_over", _A.RUNNING, _A.VERIFY_QUEUED),
        *_edges("finish", [_A.RUNNING, _A.VERIFYING], _A.FINISHED),
        *_edges("cancel", [_A.QUEUED, _A.RUNNING, _A.VERIFY_QUEUED, _A.VERIFYING], _A.CANCELLED),
    ),
)

_M = MergeStatus
MERGE = Table(
    "merge entry",
    _M.WAITING,
    (
        Edge("build", _M.WAITING, _M.BUILDING),
        Edge("pass", _M.BUILDING, _M.PASSED),
        Edge("fail", _M.BUILDING, _M.FAILED),
        *_edges("reset", [_M.BUILDING, _M.PASSED, _M.FAILED], _M.WAITING),  # what it was built on changed
        Edge("land", _M.PASSED, _M.MERGED),
        *_edges("eject", [_M.WAITING, _M.BUILDING, _M.PASSED, _M.FAILED], _M.EJECTED),
    ),
)
LIVE_MERGE = (_M.WAITING, _M.BUILDING, _M.PASSED, _M.FAILED)

ACTIVE_TICKET = (TicketStatus.QUEUED, TicketStatus.RUNNING)
WAITING_ATTEMPT = (AttemptStatus.QUEUED, AttemptStatus.VERIFY_QUEUED)
LEASED_ATTEMPT = (AttemptStatus.RUNNING, AttemptStatus.VERIFYING)
OPEN_ATTEMPT = WAITING_ATTEMPT + LEASED_ATTEMPT
# The attempts waiting for an agent slot and not sent yet, in SQL of constants: the partial index ix_attempts_waiting
# holds these rows, and serves a query that states this very condition (db/queries/scheduling).
WAITING_LINE = f"status = '{AttemptStatus.QUEUED.value}' AND dispatched_at IS NULL"


class HasStatus(Protocol):
    """A row with an id and a status column (a ticket, run, attempt or merge entry)."""

    id: int
    status: str


_TABLES: dict[type[Enum], Table[Any]] = {
    TicketStatus: TICKET,
    RunStatus: RUN,
    AttemptStatus: ATTEMPT,
    MergeStatus: MERGE,
}


def table(status: S) -> Table[S]:
    """The transition table status belongs to."""
    rules: Table[Any] = _TABLES[type(status)]
    return rules


def move(row: HasStatus, new: S) -> None:
    """Write row's new status, or raise IllegalTransition when its table has no such move."""
    rules = table(new)
    row.status = rules.check(type(new)(row.status), new).value


def bulk(new: S, among: Iterable[S] | None = None) -> tuple[list[str], dict[str, str]]:
    """For `UPDATE ... WHERE status IN (sources) ... VALUES (status=new)`: the legal sources (of among), the values."""
    rules = table(new)
    legal = rules.sources(new)
    sources = [s for s in (legal if among is None else among) if s in legal]
    if not sources:
        raise IllegalTransition(rules.kind, "/".join(s.value for s in among or ()), new.value)
    return [s.value for s in sources], {"status": new.value}


def sources(target: S, action: str | None = None) -> tuple[S, ...]:
    """The statuses a row may leave for target (by action, when named)."""
    return table(target).sources(target, action)


def require(row: HasStatus, new: S, action: str, refusal: str = "") -> None:
    """Raise IllegalTransition (with refusal, else a sentence naming who may) unless action may move row to new."""
    rules, old = table(new), type(new)(row.status)
    allowed = rules.sources(new, action)
    if old not in allowed:
        who = _either([s.value for s in allowed])
        message = refusal or f"{rules.kind} {row.id} is {old.value}; only {who} {rules.kind}s {action}"
        raise IllegalTransition(rules.kind, old.value, new.value, message)


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
