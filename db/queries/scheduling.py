"""What the scheduler weighs: waiting attempts, slots in use, live worker slots, limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, bindparam, func, select, text, true, update
from sqlalchemy.orm import Session, aliased

from db.engine import rows
from db.lifecycle import OPEN_ATTEMPT, WAITING_LINE, AttemptStatus
from db.models import Attempt, Repo, Run, Worker, utcnow
from db.specs import RepoSettings

SCHEDULER_LOCK = 0x666C656574  # "fleet": one scheduler at a time across every process and machine


@dataclass(frozen=True)
class Pending:
    """An attempt waiting for a slot, with what the scheduler weighs."""

    attempt_id: int
    priority: int
    repo_id: int
    agent: str


_TAKE_SCHEDULER_LOCK = select(func.pg_advisory_xact_lock(bindparam("key")))


def scheduling_lock(s: Session) -> None:
    """Serialize schedulers: SQLite's write lock is already held (BEGIN IMMEDIATE); PostgreSQL takes a lock."""
    conn = rows(s)
    if conn.dialect.name == "postgresql":
        conn.execute(_TAKE_SCHEDULER_LOCK, {"key": SCHEDULER_LOCK})


# Built once: a scheduler pass runs after every agent's end, and building these costs more than running them.
# Each repository's first waiting attempts, walked in order from the partial index ix_attempts_waiting (used where
# a query states its WAITING_LINE): a pass reads the few it may send, however long the backlog (ranking every
# waiting attempt cost 15 ms with 10,000 queued). PostgreSQL walks the index once per repository through LATERAL;
# SQLite, which has no LATERAL, through a correlated IN (which PostgreSQL would test against every attempt).
_QUEUED = aliased(Attempt)
_FIRST_OF_REPO = (
    select(_QUEUED.id, _QUEUED.precedence, _QUEUED.repo_id, _QUEUED.run_id)
    .where(text(WAITING_LINE), _QUEUED.repo_id == Repo.id)  # its columns are the subquery's, the nearest
    .order_by(_QUEUED.precedence, _QUEUED.id)
    .limit(bindparam("per_repo"))
    .correlate(Repo)
)
_FIRST_LATERAL = _FIRST_OF_REPO.lateral("first")
_PENDING = {
    "postgresql": select(_FIRST_LATERAL.c.id, -_FIRST_LATERAL.c.precedence, _FIRST_LATERAL.c.repo_id, Run.agent)
    .select_from(Repo)
    .join(_FIRST_LATERAL, true())
    .join(Run, Run.id == _FIRST_LATERAL.c.run_id),
    "sqlite": select(Attempt.id, -Attempt.precedence, Attempt.repo_id, Run.agent)
    .select_from(Repo)
    .join(Attempt, Attempt.id.in_(_FIRST_OF_REPO.with_only_columns(_QUEUED.id)))
    .join(Run, Run.id == Attempt.run_id),
}
_SENT_OR_RUNNING = ((Attempt.status == AttemptStatus.QUEUED.value) & Attempt.dispatched_at.is_not(None)) | (
    Attempt.status == AttemptStatus.RUNNING.value
)
_IN_FLIGHT = (
    select(Attempt.repo_id, Run.agent, func.count())
    .select_from(Attempt)
    .join(Run, Run.id == Attempt.run_id)
    .where(_SENT_OR_RUNNING)
    .group_by(Attempt.repo_id, Run.agent)
)
_LIVE_SLOTS = select(func.coalesce(func.sum(Worker.slots), 0)).where(
    Worker.stopped_at.is_(None), Worker.heartbeat_at >= bindparam("cutoff")
)
_REPO_SETTINGS = select(Repo.id, Repo.settings)
_MARK_DISPATCHED = (
    update(Attempt)
    .where(Attempt.id.in_(bindparam("ids", expanding=True)))
    .values(dispatched_at=bindparam("now", type_=Attempt.__table__.c.dispatched_at.type))
)


def pending(s: Session, per_repo: int) -> list[Pending]:
    """Queued attempts not yet sent: each repository's first `per_repo` by priority and age.

    Per repository, so a backlog of thousands in one repository never hides another's few.
    """
    conn = rows(s)
    return [Pending(*row) for row in conn.execute(_PENDING[conn.dialect.name], {"per_repo": per_repo}).all()]


def in_flight(s: Session) -> dict[tuple[int, str], int]:
    """How many attempts per (repo id, agent) hold or are about to hold an agent slot: sent or running.

    Verification holds no agent slot: each worker runs it on a budget of its own, sized to its cores. Counted by
    the database: a pass reads a row per repository and agent, not one per busy slot."""
    return {(repo_id, agent): count for repo_id, agent, count in rows(s).execute(_IN_FLIGHT).all()}


def live_slots(s: Session, stale_seconds: float) -> int:
    """Slots of the workers that are running and beat recently."""
    return int(rows(s).scalar(_LIVE_SLOTS, {"cutoff": utcnow() - timedelta(seconds=stale_seconds)}) or 0)


def repo_limits(s: Session) -> dict[int, int]:
    """The repositories that cap how many of their attempts run at once, and their caps."""
    limits = {
        repo_id: RepoSettings.from_stored(stored).max_concurrency for repo_id, stored in rows(s).execute(_REPO_SETTINGS)
    }
    return {repo_id: limit for repo_id, limit in limits.items() if limit}


def mark_dispatched(s: Session, attempt_ids: Sequence[int]) -> None:
    if attempt_ids:
        rows(s).execute(_MARK_DISPATCHED, {"ids": list(attempt_ids), "now": utcnow()})


_COUNT_OPEN = select(func.count()).select_from(Attempt).where(Attempt.status.in_(OPEN_ATTEMPT))


def count_open_attempts(s: Session | Connection) -> int:
    return s.scalar(_COUNT_OPEN) or 0
