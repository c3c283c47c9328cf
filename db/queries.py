"""Every read and write Fleet makes; the state machine's conditional updates live here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, cast, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from db.models import Attempt, Baseline, Event, Repo, Review, Run, Ticket, Verification, Worker, utcnow
from db.lifecycle import (
    LEASED_ATTEMPT,
    OPEN_ATTEMPT,
    WAITING_ATTEMPT,
    AttemptStatus,
    RunStatus,
    TicketStatus,
    ticket_transition,
)


class NotFound(Exception):
    """No row with that id or name."""


class AlreadyExists(Exception):
    """A row with that unique name exists."""


# --- repos -----------------------------------------------------------------------------------------


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
        known = ", ".join(s.scalars(select(Repo.name).order_by(Repo.name))) or "none registered"
        raise NotFound(f"unknown repo {name!r} (known: {known})")
    return repo


def list_repos(s: Session) -> Sequence[Repo]:
    return s.scalars(select(Repo).order_by(Repo.name)).all()


# --- tickets, runs, attempts -----------------------------------------------------------------------


def add_ticket(s: Session, run_agents: Sequence[str], **fields: Any) -> Ticket:
    """A ticket with one run per agent in run_agents; the caller adds the first attempts."""
    ticket = Ticket(**fields)
    s.add(ticket)
    s.flush()
    for index, agent in enumerate(run_agents):
        s.add(Run(ticket_id=ticket.id, index=index, agent=agent, attempt_limit=ticket.attempt_budget))
    s.flush()
    s.refresh(ticket)
    return ticket


def add_attempt(s: Session, run: Run, prompt: str, feedback_in: str = "") -> Attempt:
    number = (s.scalar(select(func.max(Attempt.number)).where(Attempt.run_id == run.id)) or 0) + 1
    attempt = Attempt(
        run_id=run.id,
        ticket_id=run.ticket_id,
        number=number,
        prompt=prompt,
        feedback_in=feedback_in,
        status=AttemptStatus.QUEUED.value,
    )
    s.add(attempt)
    s.flush()
    return attempt


def get_ticket(s: Session, ticket_id: int, *, lock: bool = False) -> Ticket:
    query = select(Ticket).where(Ticket.id == ticket_id)
    if lock:
        query = query.with_for_update(of=Ticket)
    ticket = s.scalar(query)
    if ticket is None:
        raise NotFound(f"unknown ticket {ticket_id}")
    return ticket


def load_ticket_tree(s: Session, ticket_id: int) -> Ticket:
    """The ticket with runs, attempts and verifications loaded, for show and review."""
    query = (
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .options(selectinload(Ticket.runs).selectinload(Run.attempts).selectinload(Attempt.verification))
    )
    ticket = s.scalar(query)
    if ticket is None:
        raise NotFound(f"unknown ticket {ticket_id}")
    return ticket


def list_tickets(s: Session, status: str | None = None, repo: str | None = None, limit: int = 500) -> Sequence[Ticket]:
    query = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if status:
        query = query.where(Ticket.status == status)
    if repo:
        query = query.join(Repo).where(Repo.name == repo)
    return s.scalars(query).all()


def get_attempt(s: Session, attempt_id: int) -> Attempt:
    """The attempt with its run, ticket and repo, loaded in one query."""
    attempt = s.get(Attempt, attempt_id, options=[joinedload(Attempt.run).joinedload(Run.ticket)])
    if attempt is None:
        raise NotFound(f"unknown attempt {attempt_id}")
    return attempt


def set_ticket_status(s: Session, ticket: Ticket, new: TicketStatus, reason: str = "") -> None:
    ticket.status = ticket_transition(TicketStatus(ticket.status), new).value
    ticket.status_reason = reason
    ticket.updated_at = utcnow()


def log_event(
    s: Session,
    kind: str,
    message: str,
    *,
    ticket_id: int | None = None,
    attempt_id: int | None = None,
    actor: str = "",
) -> None:
    s.add(Event(kind=kind, message=message, ticket_id=ticket_id, attempt_id=attempt_id, actor=actor))


def ticket_events(s: Session, ticket_id: int) -> Sequence[Event]:
    return s.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id)).all()


# --- the attempt state machine ---------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """Who holds an attempt, and the fencing token every later write must present."""

    owner: str
    token: str
    seconds: float

    def expires(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)


def claim(s: Session, attempt_id: int, waiting: AttemptStatus, leased: AttemptStatus, lease: Lease) -> bool:
    """Compare-and-set waiting -> leased; False means another delivery got there first (do nothing)."""
    values: dict[str, Any] = dict(
        status=leased.value,
        lease_owner=lease.owner,
        lease_token=lease.token,
        lease_expires_at=lease.expires(),
    )
    if leased == AttemptStatus.RUNNING:
        values.update(agent_runs=Attempt.agent_runs + 1, started_at=utcnow())
    result = s.execute(
        update(Attempt).where(Attempt.id == attempt_id, Attempt.status == waiting.value).values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def advance(s: Session, attempt_id: int, lease: Lease, to: AttemptStatus, **values: Any) -> bool:
    """Move a leased attempt on, only while lease.token still holds it (fencing against zombies)."""
    release = dict(lease_owner=None, lease_token=None, lease_expires_at=None)
    result = s.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id, Attempt.lease_token == lease.token, Attempt.status.in_(LEASED_ATTEMPT))
        .values(status=to.value, **release, **values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def renew_leases(s: Session, owner: str, tokens: Iterable[str], seconds: float) -> set[str]:
    """Extend every lease owner still holds; returns the tokens that are still held."""
    tokens = list(tokens)
    if not tokens:
        return set()
    s.execute(
        update(Attempt)
        .where(Attempt.lease_owner == owner, Attempt.lease_token.in_(tokens))
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
    )
    held = s.scalars(select(Attempt.lease_token).where(Attempt.lease_token.in_(tokens)))
    return {t for t in held if t}


def cancel_requested(s: Session, attempt_ids: Iterable[int]) -> set[int]:
    """The attempts among attempt_ids whose ticket asked to be cancelled, or whose run was stopped."""
    ids = list(attempt_ids)
    if not ids:
        return set()
    stopped = Ticket.cancel_requested_at.is_not(None) | (Run.status == RunStatus.CANCELLED.value)
    query = (
        select(Attempt.id)
        .join(Ticket, Ticket.id == Attempt.ticket_id)
        .join(Run, Run.id == Attempt.run_id)
        .where(Attempt.id.in_(ids), stopped)
    )
    return set(s.scalars(query))


def expire_leases(s: Session) -> list[tuple[int, AttemptStatus]]:
    """Put attempts whose lease ran out back in line; returns (id, waiting status) to re-send."""
    back = {AttemptStatus.RUNNING: AttemptStatus.QUEUED, AttemptStatus.VERIFYING: AttemptStatus.VERIFY_QUEUED}
    expired = s.execute(
        select(Attempt.id, Attempt.status, Attempt.lease_token).where(
            Attempt.status.in_(LEASED_ATTEMPT), Attempt.lease_expires_at < utcnow()
        )
    ).all()
    requeued = []
    for attempt_id, status, token in expired:
        waiting = back[AttemptStatus(status)]
        result = s.execute(
            update(Attempt)
            .where(Attempt.id == attempt_id, Attempt.lease_token == token)
            .values(
                status=waiting.value,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
                recoveries=Attempt.recoveries + 1,
                dispatched_at=utcnow(),
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            requeued.append((attempt_id, waiting))
    return requeued


def undelivered(s: Session, older_than_seconds: float) -> list[tuple[int, AttemptStatus]]:
    """Waiting attempts not sent for a while (their message may be lost); stamps them as sent now."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    rows = s.execute(
        select(Attempt.id, Attempt.status).where(Attempt.status.in_(WAITING_ATTEMPT), Attempt.dispatched_at <= cutoff)
    ).all()
    if rows:
        s.execute(update(Attempt).where(Attempt.id.in_([r[0] for r in rows])).values(dispatched_at=utcnow()))
    return [(attempt_id, AttemptStatus(status)) for attempt_id, status in rows]


# --- scheduling ------------------------------------------------------------------------------------

SCHEDULER_LOCK = 0x666C656574  # "fleet": one scheduler at a time across every process and machine


@dataclass(frozen=True)
class Pending:
    """An attempt waiting for a slot, with what the scheduler weighs."""

    attempt_id: int
    priority: int
    repo_id: int
    agent: str


def scheduling_lock(s: Session) -> None:
    """Serialize schedulers: SQLite's write lock is already held (BEGIN IMMEDIATE); PostgreSQL takes a lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULER_LOCK})


def pending(s: Session, per_repo: int) -> list[Pending]:
    """Queued attempts not yet sent: each repository's first `per_repo` by priority and age.

    Per repository, so a backlog of thousands in one repository never hides another's few.
    """
    rank = func.row_number().over(partition_by=Ticket.repo_id, order_by=(Ticket.priority.desc(), Attempt.id))
    ranked = (
        select(Attempt.id, Ticket.priority, Ticket.repo_id, Run.agent, rank.label("rank"))
        .select_from(Attempt)
        .join(Run, Run.id == Attempt.run_id)
        .join(Ticket, Ticket.id == Attempt.ticket_id)
        .where(Attempt.status == AttemptStatus.QUEUED.value, Attempt.dispatched_at.is_(None))
        .subquery()
    )
    query = select(ranked.c.id, ranked.c.priority, ranked.c.repo_id, ranked.c.agent).where(ranked.c.rank <= per_repo)
    return [Pending(*row) for row in s.execute(query).all()]


def in_flight(s: Session) -> list[tuple[int, str]]:
    """(repo id, agent) of every attempt holding or about to hold a slot: sent, running or verifying."""
    sent = (Attempt.status == AttemptStatus.QUEUED.value) & Attempt.dispatched_at.is_not(None)
    query = (
        select(Ticket.repo_id, Run.agent)
        .select_from(Attempt)
        .join(Run, Run.id == Attempt.run_id)
        .join(Ticket, Ticket.id == Attempt.ticket_id)
        .where(sent | Attempt.status.in_([s_.value for s_ in LEASED_ATTEMPT + (AttemptStatus.VERIFY_QUEUED,)]))
    )
    return [(repo_id, agent) for repo_id, agent in s.execute(query).all()]


def live_slots(s: Session, stale_seconds: float) -> int:
    """Slots of the workers that are running and beat recently."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    query = select(func.coalesce(func.sum(Worker.slots), 0)).where(
        Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff
    )
    return int(s.scalar(query) or 0)


def repo_limits(s: Session) -> dict[int, int]:
    return {r.id: int(r.settings["max_concurrency"]) for r in list_repos(s) if r.settings.get("max_concurrency")}


def mark_dispatched(s: Session, attempt_ids: Sequence[int]) -> None:
    if attempt_ids:
        s.execute(update(Attempt).where(Attempt.id.in_(list(attempt_ids))).values(dispatched_at=utcnow()))


def open_attempts(s: Session, ticket_id: int) -> Sequence[Attempt]:
    query = select(Attempt).where(Attempt.ticket_id == ticket_id, Attempt.status.in_(OPEN_ATTEMPT))
    return s.scalars(query).all()


def count_open_attempts(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Attempt).where(Attempt.status.in_(OPEN_ATTEMPT))) or 0


def add_verification(s: Session, attempt_id: int, **fields: Any) -> Verification:
    verification = Verification(attempt_id=attempt_id, **fields)
    s.add(verification)
    s.flush()
    return verification


def find_baseline(s: Session, repo_id: int, base_sha: str, spec_hash: str) -> Baseline | None:
    query = select(Baseline).where(
        Baseline.repo_id == repo_id, Baseline.base_sha == base_sha, Baseline.spec_hash == spec_hash
    )
    return s.scalar(query)


def save_baseline(s: Session, repo_id: int, base_sha: str, spec_hash: str, result: dict[str, Any]) -> Baseline:
    """Store a baseline; when another worker stored the same one first, keep and return theirs."""
    try:
        with s.begin_nested():
            baseline = Baseline(repo_id=repo_id, base_sha=base_sha, spec_hash=spec_hash, result=result)
            s.add(baseline)
    except IntegrityError:
        existing = find_baseline(s, repo_id, base_sha, spec_hash)
        assert existing is not None
        return existing
    return baseline


def count_baselines(s: Session, repo_id: int) -> int:
    return s.scalar(select(func.count()).select_from(Baseline).where(Baseline.repo_id == repo_id)) or 0


# --- runs and review -------------------------------------------------------------------------------


def finish_run(s: Session, run: Run, status: RunStatus) -> None:
    run.status = status.value
    run.finished_at = utcnow()


def spend(
    s: Session, *, ticket_id: int | None = None, repo_id: int | None = None, since: datetime | None = None
) -> float:
    """Dollars spent by the attempts of one ticket, or of one repository since a moment."""
    query = select(func.coalesce(func.sum(Attempt.cost_usd), 0.0)).join(Ticket, Ticket.id == Attempt.ticket_id)
    if ticket_id is not None:
        query = query.where(Attempt.ticket_id == ticket_id)
    if repo_id is not None:
        query = query.where(Ticket.repo_id == repo_id)
    if since is not None:
        query = query.where(Attempt.created_at >= since)
    return float(s.scalar(query) or 0.0)


def runs_since(s: Session, since: datetime) -> Sequence[Run]:
    """Runs created since a moment, with their attempts, verifications and tickets, for the stats table."""
    query = (
        select(Run)
        .where(Run.created_at >= since)
        .options(selectinload(Run.attempts).selectinload(Attempt.verification), selectinload(Run.ticket))
    )
    return s.scalars(query).all()


def review_candidates(s: Session) -> Sequence[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.status == TicketStatus.NEEDS_REVIEW.value)
        .order_by(Ticket.priority.desc(), Ticket.id)
    )
    return s.scalars(query).all()


def add_review(s: Session, **fields: Any) -> Review:
    review = Review(**fields)
    s.add(review)
    s.flush()
    return review


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


def ticket_counts(s: Session) -> dict[str, int]:
    rows = s.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all()
    return {status: count for status, count in rows}


def attempt_counts(s: Session) -> dict[str, int]:
    rows = s.execute(
        select(Attempt.status, func.count()).where(Attempt.status.in_(OPEN_ATTEMPT)).group_by(Attempt.status)
    ).all()
    return {status: count for status, count in rows}


# --- housekeeping (`fleet gc`) ----------------------------------------------------------------------

# Tickets whose attempts nobody will run, rank or review again: their stored text can go.
SETTLED_TICKET = (
    TicketStatus.FAILED,
    TicketStatus.ERROR,
    TicketStatus.CANCELLED,
    TicketStatus.APPROVED,
    TicketStatus.REJECTED,
)


def open_attempt_ids(s: Session, attempt_ids: Iterable[int]) -> set[int]:
    """Those of attempt_ids that are waiting or running (their folders are in use or about to be)."""
    ids = list(attempt_ids)
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        query = select(Attempt.id).where(Attempt.id.in_(ids[start : start + 500]), Attempt.status.in_(OPEN_ATTEMPT))
        found.update(s.scalars(query))
    return found


def base_commits(s: Session) -> dict[int, set[str]]:
    """Every ticket's base commit, by repository id."""
    bases: dict[int, set[str]] = {}
    for repo_id, sha in s.execute(select(Ticket.repo_id, Ticket.base_sha).distinct()):
        bases.setdefault(repo_id, set()).add(sha)
    return bases


def clear_attempt_text(s: Session, finished_before: datetime) -> tuple[int, int]:
    """Empty the transcripts, diffs and test outputs of attempts finished before a moment, on settled tickets only.

    Rows, verdicts, reasons, feedback and diff stats stay. Returns (attempts cleared, bytes cleared).
    """
    settled = (
        select(Attempt.id)
        .join(Ticket, Ticket.id == Attempt.ticket_id)
        .where(
            Ticket.status.in_([t.value for t in SETTLED_TICKET]),
            Attempt.status.in_([AttemptStatus.FINISHED.value, AttemptStatus.CANCELLED.value]),
            func.coalesce(Attempt.finished_at, Attempt.created_at) < finished_before,
        )
    )
    octets = _octets(s)
    size = octets(Attempt.transcript) + octets(Attempt.diff) + func.coalesce(octets(Verification.output), 0)
    count, total = s.execute(
        select(func.count(), func.coalesce(func.sum(size), 0))
        .select_from(Attempt)
        .outerjoin(Verification, Verification.attempt_id == Attempt.id)
        .where(Attempt.id.in_(settled), size > 0)
    ).one()
    s.execute(update(Attempt).where(Attempt.id.in_(settled)).values(transcript="", diff=""))
    s.execute(update(Verification).where(Verification.attempt_id.in_(settled)).values(output=""))
    return int(count), int(total)


def _octets(s: Session) -> Any:
    """The SQL for a text column's length in bytes on this database."""
    if s.get_bind().dialect.name == "sqlite":
        return lambda column: func.length(cast(column, LargeBinary))
    return func.octet_length
