"""Read-only figures for the web dashboard, the API and /metrics: filters, running work, time series, spend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from db.lifecycle import LEASED_ATTEMPT, OPEN_ATTEMPT, AttemptStatus, TicketStatus
from db.models import Attempt, MetricTotal, Repo, Run, Ticket, Verification, Worker
from db.queries import NotFound, Session


def find_tickets(
    s: Session,
    status: str | None = None,
    repo: str | None = None,
    agent: str | None = None,
    limit: int = 200,
    with_runs: bool = False,
    before: int | None = None,
) -> Sequence[Ticket]:
    """Tickets newest first (older than ticket `before`, for the next page: an index range, never an offset);
    agent matches one of the ticket's comma-separated agents."""
    # The repositories in a second query: joined to the page, PostgreSQL sorts the whole table before the limit.
    query = select(Ticket).options(selectinload(Ticket.repo)).order_by(Ticket.id.desc()).limit(limit)
    if before:
        query = query.where(Ticket.id < before)
    if with_runs:
        query = query.options(selectinload(Ticket.runs).selectinload(Run.attempts).selectinload(Attempt.verification))
    return s.scalars(_filtered(query, status, repo, agent)).all()


@dataclass(frozen=True)
class ReviewMark:
    """A place in the review order: the last ticket of a page and the priority it had when that page was read (its
    priority now when not given). Carrying the priority fixes the place: a ticket whose priority changes later moves
    no page boundary, so every ticket that keeps its priority is read exactly once.

    A ticket whose own priority changes across the reader's place between two pages is read twice or not at all, and
    no cursor of bounded size can prevent it (the next page cannot tell whether it was on an earlier one without its
    old priority); Fleet sets a priority once, at submission, so only a hand edit of the database does that."""

    ticket_id: int
    priority: int | None = None


def review_tickets(
    s: Session,
    repo: str | None = None,
    agent: str | None = None,
    limit: int | None = None,
    after: ReviewMark | None = None,
) -> Sequence[Ticket]:
    """Tickets waiting for review, highest priority first, then oldest; filtered as find_tickets filters, a page
    of `limit` after the mark `after` (a place in that order, never an offset: an approval between two pages
    moves no ticket past the reader)."""
    query = select(Ticket).order_by(Ticket.priority.desc(), Ticket.id).limit(limit)
    if after:
        mark: Any = after.priority
        if mark is None:
            mark = select(Ticket.priority).where(Ticket.id == after.ticket_id).scalar_subquery()
        place = and_(Ticket.priority == mark, Ticket.id > after.ticket_id)
        query = query.where(or_(Ticket.priority < mark, place))
    return s.scalars(_filtered(query, TicketStatus.NEEDS_REVIEW.value, repo, agent)).all()


def _filtered(query: Select[Ticket], status: str | None, repo: str | None, agent: str | None) -> Select[Ticket]:
    if status:
        query = query.where(Ticket.status == status)
    if repo:
        query = query.join(Repo).where(Repo.name == repo)
    if agent:
        query = query.where(
            or_(
                Ticket.agent == agent,
                Ticket.agent.startswith(agent + ","),
                Ticket.agent.endswith("," + agent),
                Ticket.agent.contains("," + agent + ","),
            )
        )
    return query


def get_run(s: Session, run_id: int) -> Run:
    query = select(Run).where(Run.id == run_id).options(selectinload(Run.attempts).selectinload(Attempt.verification))
    run = s.scalar(query)
    if run is None:
        raise NotFound(f"unknown run {run_id}")
    return run


def get_verification(s: Session, verification_id: int) -> Verification:
    verification = s.get(Verification, verification_id)
    if verification is None:
        raise NotFound(f"unknown verification {verification_id}")
    return verification


def running_attempts(s: Session) -> Sequence[Attempt]:
    """Attempts an agent or a verifier holds now, oldest first, with run and ticket loaded."""
    query = (
        select(Attempt)
        .where(Attempt.status.in_([st.value for st in LEASED_ATTEMPT]))
        .options(joinedload(Attempt.run).joinedload(Run.ticket))
        .order_by(Attempt.started_at)
    )
    return s.scalars(query).unique().all()


def verdicts_since(s: Session, since: datetime) -> list[tuple[datetime, str]]:
    """(time, verdict) of every verification recorded since `since`."""
    rows = s.execute(select(Verification.created_at, Verification.verdict).where(Verification.created_at >= since))
    return [(created, verdict) for created, verdict in rows]


def review_backlog(s: Session) -> tuple[int, datetime | None]:
    """Tickets waiting for review and the oldest one's last change (when it started waiting)."""
    row = s.execute(
        select(func.count(), func.min(Ticket.updated_at)).where(Ticket.status == TicketStatus.NEEDS_REVIEW.value)
    ).one()
    return int(row[0] or 0), row[1]


def spend_since(s: Session, since: datetime) -> float:
    return float(s.scalar(select(func.sum(Attempt.cost_usd)).where(Attempt.created_at >= since)) or 0.0)


# The buckets of the duration histograms: migration 0009's triggers count into these (a label is the bound as
# Prometheus prints it); changing them takes a migration that rewrites the triggers and recounts.
DURATION_BOUNDS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class Histogram:
    """How many values fell at or under each bound of DURATION_BOUNDS, their sum and their count."""

    at_most: list[int]
    total: float
    count: int


@dataclass(frozen=True)
class Totals:
    """Everything ever recorded, as /metrics counts it: verifications by verdict, the verifications' and the agents'
    run times, and spend in US dollars. Deleted rows stay counted: these only grow."""

    verdicts: dict[str, int]
    verification_seconds: Histogram
    agent_seconds: Histogram
    cost_usd: float


def _histogram(buckets: dict[str, tuple[int, float]]) -> Histogram:
    per_bucket = [buckets.get(f"{bound:g}", (0, 0.0))[0] for bound in DURATION_BOUNDS]
    at_most = [sum(per_bucket[: index + 1]) for index in range(len(per_bucket))]
    return Histogram(at_most, sum(total for _, total in buckets.values()), sum(n for n, _ in buckets.values()))


def totals(s: Session) -> Totals:
    """The running totals the database keeps (a few hundred rows, whatever the history's size)."""
    query = select(MetricTotal.metric, MetricTotal.label, func.sum(MetricTotal.count), func.sum(MetricTotal.total))
    found: dict[str, dict[str, tuple[int, float]]] = {}
    for metric, label, count, total in s.execute(query.group_by(MetricTotal.metric, MetricTotal.label)):
        found.setdefault(metric, {})[label] = (int(count), float(total))
    return Totals(
        verdicts={verdict: count for verdict, (count, _) in sorted(found.get("verifications", {}).items())},
        verification_seconds=_histogram(found.get("verification_seconds", {})),
        agent_seconds=_histogram(found.get("agent_seconds", {})),
        cost_usd=sum(total for _, total in found.get("cost_usd", {}).values()),
    )


def ticket_fingerprint(s: Session, ticket_id: int) -> tuple[Any, ...]:
    """What a ticket page shows that can change: status, reason, and every attempt's status and verdict."""
    ticket = s.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"unknown ticket {ticket_id}")
    rows = s.execute(
        select(Attempt.id, Attempt.status, Verification.verdict)
        .outerjoin(Verification, Verification.attempt_id == Attempt.id)
        .where(Attempt.ticket_id == ticket_id)
        .order_by(Attempt.id)
    ).all()
    return (ticket.status, ticket.status_reason, tuple(tuple(r) for r in rows))


def running_transcripts(s: Session, ticket_id: int) -> dict[int, str]:
    """The output so far of the ticket's attempts whose agent runs, by attempt id."""
    rows = s.execute(
        select(Attempt.id, Attempt.transcript).where(
            Attempt.ticket_id == ticket_id, Attempt.status == AttemptStatus.RUNNING
        )
    )
    return {attempt_id: transcript for attempt_id, transcript in rows}


def ticket_statuses(s: Session, ticket_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(status, reason) of each ticket in ticket_ids."""
    if not ticket_ids:
        return {}
    rows = s.execute(select(Ticket.id, Ticket.status, Ticket.status_reason).where(Ticket.id.in_(list(ticket_ids))))
    return {tid: (status, reason) for tid, status, reason in rows}


def newest_ticket_id(s: Session) -> int:
    return int(s.scalar(select(func.max(Ticket.id))) or 0)


def fleet_fingerprint(s: Session) -> tuple[Any, ...]:
    """What the Fleet page's figures move with: tickets and open attempts by status, the newest verdict, the live
    workers' slots in use. Index lookups only, so the live view can ask every second."""
    tickets = sorted(s.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all())
    attempts = sorted(
        s.execute(
            select(Attempt.status, func.count()).where(Attempt.status.in_(OPEN_ATTEMPT)).group_by(Attempt.status)
        ).all()
    )
    newest = s.scalar(select(func.max(Verification.id)))
    workers = s.execute(select(func.count(), func.sum(Worker.busy)).where(Worker.stopped_at.is_(None))).one()
    return (tuple(map(tuple, tickets)), tuple(map(tuple, attempts)), newest, tuple(workers))
