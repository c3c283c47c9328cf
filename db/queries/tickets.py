"""Tickets, their runs, attempts, verifications, reviews and events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import RowMapping, Select, Table, bindparam, exists, func, insert, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from db import lifecycle
from db.engine import one_of, rows
from db.lifecycle import (
    LEASED_ATTEMPT,
    OPEN_ATTEMPT,
    AttemptStatus,
    RunStatus,
    TicketStatus,
)
from db.models import Attempt, Base, Event, Repo, Review, Run, Ticket, Verification, utcnow
from db.queries.errors import NotFound
from db.queries.forge import NOTIFIED, notify
from db.reasons import shown


def add_ticket(s: Session, run_agents: Sequence[str], **fields: Any) -> Ticket:
    """A ticket with one run per agent in run_agents, written in one flush; the caller adds the first attempts."""
    ticket = Ticket(**fields)
    budget = fields.get("attempt_budget", Ticket.__table__.c.attempt_budget.default.arg)
    ticket.runs = [Run(index=index, agent=agent, attempt_limit=budget) for index, agent in enumerate(run_agents)]
    s.add(ticket)
    s.flush()
    return ticket


def insert_rows(s: Session, model: type[Base], rows: Sequence[Mapping[str, Any]], returning: bool = True) -> list[int]:
    """Rows of one table in one executemany INSERT; with returning, the ids they were given, in the order of rows.
    Every row names the same columns; the others take their defaults."""
    if not rows:
        return []
    table = cast(Table, model.__table__)
    if not returning:
        s.execute(insert(table), rows)
        return []
    ids = _next_ids(s, table, len(rows))
    s.execute(insert(table), [{**row, "id": row_id} for row, row_id in zip(rows, ids, strict=True)])
    return ids


def _next_ids(s: Session, table: Table, count: int) -> list[int]:
    """count new ids for table, taken before the INSERT so that it needs no RETURNING: SQLite's promises no order
    (SQLAlchemy would send a row per statement), and PostgreSQL's, in order, costs a statement of thousands of
    placeholders that psycopg parses in Python."""
    if s.get_bind().dialect.name == "postgresql":
        sequence = select(func.nextval(func.pg_get_serial_sequence(table.name, "id")))
        return list(s.scalars(sequence.select_from(func.generate_series(1, count))))
    # This transaction holds SQLite's write lock (BEGIN IMMEDIATE): the ids it would give next are ours to give.
    first = (s.scalar(select(func.max(table.c.id))) or 0) + 1
    return list(range(first, first + count))


def add_attempt(s: Session, run: Run, prompt: str, feedback_in: str = "") -> Attempt:
    number = (s.scalar(select(func.max(Attempt.number)).where(Attempt.run_id == run.id)) or 0) + 1
    attempt = Attempt(
        run_id=run.id,
        ticket_id=run.ticket_id,
        number=number,
        prompt=prompt,
        feedback_in=feedback_in,
    )
    s.add(attempt)
    s.flush()
    s.expire(attempt, ["repo_id", "precedence"])  # SQLite's trigger wrote them after the INSERT's RETURNING read them
    return attempt


def get_run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"unknown run {run_id}")
    return run


def get_ticket(s: Session, ticket_id: int, *, lock: bool = False) -> Ticket:
    """The ticket; with lock, its row locked until the transaction ends (PostgreSQL; SQLite's write lock is held
    already) and read again, so a decision checks the status that no one else can change before it commits. NO KEY
    UPDATE, as a verdict's: a worker writing rows that point at the ticket (events, attempts) while it holds its
    attempt's row does not wait for a cancel that waits for that attempt."""
    query = select(Ticket).where(Ticket.id == ticket_id)
    if lock:
        query = query.with_for_update(of=Ticket, key_share=True).execution_options(populate_existing=True)
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


def list_tickets(
    s: Session, status: str | None = None, repo: str | None = None, limit: int = 500, before: int | None = None
) -> Sequence[Ticket]:
    """Tickets newest first; before (a ticket id) starts the page after the one that ended there."""
    # The repositories in a second query: joined to the page, PostgreSQL sorts the whole table before the limit.
    query = select(Ticket).options(selectinload(Ticket.repo)).order_by(Ticket.id.desc()).limit(limit)
    if before:
        query = query.where(Ticket.id < before)
    if status:
        query = query.where(Ticket.status == status)
    if repo:
        query = query.join(Repo).where(Repo.name == repo)
    return s.scalars(query).all()


def repo_tickets_in(s: Session, repo: str, statuses: Iterable[str]) -> list[tuple[int, str]]:
    """(id, status) of a repository's tickets in the given statuses, by id, filtered in the database."""
    query = (
        select(Ticket.id, Ticket.status)
        .join(Repo)
        .where(Repo.name == repo, Ticket.status.in_(list(statuses)))
        .order_by(Ticket.id)
    )
    return [(ticket_id, status) for ticket_id, status in s.execute(query)]


def get_attempt(s: Session, attempt_id: int) -> Attempt:
    """The attempt with its run, ticket and repo, loaded in one query."""
    attempt = s.execute(_ATTEMPT_WITH_TICKET, {"attempt": attempt_id}).unique().scalar_one_or_none()
    if attempt is None:
        raise NotFound(f"unknown attempt {attempt_id}")
    return attempt


def attempt_row(s: Session, attempt_id: int) -> RowMapping:
    """What a worker needs of an attempt to run it (the columns of its attempt, run, ticket and repository that
    workers/pipeline/job.py reads), as one row."""
    found = attempt_rows(s, [attempt_id]).get(attempt_id)
    if found is None:
        raise NotFound(f"unknown attempt {attempt_id}")
    return found


def attempt_rows(s: Session, attempt_ids: Sequence[int]) -> dict[int, RowMapping]:
    """attempt_row() of each attempt, by id, in one statement (an unknown id is left out): read at every claim, so
    a prebuilt statement and no objects."""
    if not attempt_ids:
        return {}
    found = rows(s).execute(_ATTEMPT_ROWS, {"attempts": list(attempt_ids)}).mappings()
    return {row["attempt_id"]: row for row in found}


def attempt_select(*columns: Any) -> Select[Any]:
    """A select of columns of attempts and of their runs, tickets and repositories."""
    joined = select(*columns).join(Run, Run.id == Attempt.run_id).join(Ticket, Ticket.id == Attempt.ticket_id)
    return joined.join(Repo, Repo.id == Ticket.repo_id)


def start_tickets(s: Session, ticket_ids: Iterable[int]) -> None:
    """A queued ticket is running once one of its attempts is claimed (a running one stays as it is)."""
    wanted = sorted(set(ticket_ids))
    if wanted:
        rows(s).execute(_START_TICKETS, {"tickets": wanted, "now": utcnow()})


def hand_back_tickets(s: Session, ticket_ids: Iterable[int], reason: str) -> list[int]:
    """A running ticket none of whose attempts runs, or waits for or runs its verification, is queued again, with
    reason: its attempts went back in line with no verdict. Called in the transaction that moved them; returns the
    tickets moved.

    The tickets are locked first (PostgreSQL): two attempts of one ticket handed back at once each see the other
    one's move once it is committed, so the last of them moves the ticket."""
    wanted = sorted(set(ticket_ids))
    if not wanted:
        return []
    conn = rows(s)
    conn.execute(select(Ticket.id).where(Ticket.id.in_(wanted)).order_by(Ticket.id).with_for_update())
    # Their attempts next (PostgreSQL): a claim of another attempt of one under way holds that attempt's row, so the
    # hand-back waits for it and then sees it at work; it never queues a ticket whose attempt was just claimed.
    conn.execute(_ATTEMPTS_OF.with_for_update(key_share=True), {"tickets": wanted})
    values = dict(_HANDED_BACK, status_reason=shown(reason), updated_at=utcnow())
    moved = conn.scalars(
        update(Ticket)
        .where(Ticket.id.in_(wanted), Ticket.status.in_(_HANDED_BACK_FROM), ~_AT_WORK)
        .values(**values)
        .returning(Ticket.id)
    )
    handed = sorted(moved)
    log_events(s, [event_row("ticket_queued", shown(reason), ticket_id=ticket_id) for ticket_id in handed])
    return handed


_ATTEMPT_ROWS = attempt_select(
    Attempt.id.label("attempt_id"),
    Attempt.number,
    Attempt.status,
    Attempt.prompt,
    Attempt.diff,
    Attempt.start_diff,
    Attempt.run_id,
    Attempt.created_at,
    Attempt.agent_finished_at,
    Run.index.label("run_index"),
    Run.agent,
    Ticket.id.label("ticket_id"),
    Ticket.status.label("ticket_status"),
    Ticket.base_sha,
    Ticket.agent_options,
    Ticket.targets,
    Ticket.area,
    Ticket.budget_usd,
    Ticket.hidden_patch,
    Repo.id.label("repo_id"),
    Repo.name.label("repo_name"),
    Repo.source,
    Repo.test_cmd,
    Repo.setup_cmd,
    Repo.settings.label("repo_settings"),
).where(Attempt.id.in_(bindparam("attempts", expanding=True)))
_STARTED_FROM, _RUNNING = lifecycle.bulk(TicketStatus.RUNNING, [TicketStatus.QUEUED])
_START_TICKETS = (
    update(Ticket)
    .where(Ticket.id.in_(bindparam("tickets", expanding=True)), one_of(Ticket.status, _STARTED_FROM))
    .values(**_RUNNING, status_reason="", updated_at=bindparam("now"))
)
_HANDED_BACK_FROM, _HANDED_BACK = lifecycle.bulk(
    TicketStatus.QUEUED, lifecycle.sources(TicketStatus.QUEUED, "hand_back")
)
_ATTEMPTS_OF = (
    select(Attempt.id).where(Attempt.ticket_id.in_(bindparam("tickets", expanding=True))).order_by(Attempt.id)
)
# An attempt at work: its agent runs, or it ended and its verification waits or runs (a ticket whose agent's work is
# done stays running until its verdict, so a verification claimed later never finds its ticket queued).
_AT_WORK = exists().where(
    Attempt.ticket_id == Ticket.id,
    Attempt.status.in_([a.value for a in (*LEASED_ATTEMPT, AttemptStatus.VERIFY_QUEUED)]),
)
_ATTEMPT_WITH_TICKET = (
    select(Attempt).where(Attempt.id == bindparam("attempt")).options(joinedload(Attempt.run).joinedload(Run.ticket))
)


def set_ticket_status(s: Session, ticket: Ticket, new: TicketStatus, reason: str = "") -> None:
    lifecycle.move(ticket, new)
    ticket.status_reason = shown(reason)
    ticket.updated_at = utcnow()
    if new in NOTIFIED:  # written with the status: the outbox sends it once, later, never holding this up
        notify(s, ticket, NOTIFIED[new], reason)


def log_event(
    s: Session,
    kind: str,
    message: str,
    *,
    ticket_id: int | None = None,
    attempt_id: int | None = None,
    actor: str = "",
) -> None:
    log_events(s, [event_row(kind, message, ticket_id=ticket_id, attempt_id=attempt_id, actor=actor)])


def event_row(
    kind: str, message: str, *, ticket_id: int | None = None, attempt_id: int | None = None, actor: str = ""
) -> dict[str, Any]:
    """An event to log, with others of the same transaction (log_events)."""
    return dict(kind=kind, message=message, ticket_id=ticket_id, attempt_id=attempt_id, actor=actor)


def log_events(s: Session, events: Sequence[dict[str, Any]]) -> None:
    """Several events in one statement, in their order (a verdict's and its ticket's)."""
    if events:
        rows(s).execute(_LOG_EVENT, list(events))


_LOG_EVENT = insert(Event)  # built once: every verdict logs two


def ticket_events(s: Session, ticket_id: int, limit: int | None = None, after: int | None = None) -> Sequence[Event]:
    """The ticket's events, oldest first; a page of `limit` after event `after` (an index range, never an offset)."""
    query = select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id).limit(limit)
    if after:
        query = query.where(Event.id > after)
    return s.scalars(query).all()


def open_attempts(s: Session, ticket_id: int) -> Sequence[Attempt]:
    query = select(Attempt).where(Attempt.ticket_id == ticket_id, Attempt.status.in_(OPEN_ATTEMPT))
    return s.scalars(query).all()


# A verification's columns that its writers give (its id is the database's, its attempt the caller's argument).
_VERIFICATION_FIELDS = frozenset(Verification.__table__.columns.keys()) - {"id", "attempt_id"}


def stored_verification(result: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a verification result that have a column (still_failing and weak only shape the feedback)."""
    return {key: value for key, value in result.items() if key in _VERIFICATION_FIELDS and key != "created_at"}


def add_verification(s: Session, attempt_id: int, **fields: Any) -> None:
    """The attempt's one verdict; its reasons are what people read, so they pass through shown()."""
    if unknown := set(fields) - _VERIFICATION_FIELDS:
        raise TypeError(f"not a verification's field: {', '.join(sorted(unknown))}")
    fields["reasons"] = [shown(str(reason)) for reason in fields.get("reasons", [])]
    rows(s).execute(_ADD_VERIFICATION, dict(fields, attempt_id=attempt_id))


_ADD_VERIFICATION = insert(Verification)  # its columns are the values given; the others take their defaults


def finish_run(s: Session, run: Run, status: RunStatus) -> None:
    lifecycle.move(run, status)
    run.finished_at = utcnow()


def add_review(s: Session, **fields: Any) -> Review:
    review = Review(**fields)
    s.add(review)
    s.flush()
    return review


def rejected_attempt_ids(s: Session, ticket_id: int) -> set[int]:
    """The attempts a reviewer rejected: their diffs are never offered for review again."""
    query = select(Review.attempt_id).where(Review.ticket_id == ticket_id, Review.decision == "rejected")
    return set(s.scalars(query).all())


def rejected_diffs(s: Session, ticket_id: int) -> dict[str, str]:
    """The diffs a reviewer rejected on a ticket (stripped), each with the reviewer's words."""
    found = rows(s).execute(_REJECTED_DIFFS, {"ticket": ticket_id})
    return {diff.strip(): feedback or "" for diff, feedback in found}


# Built once: the policy asks after every passing verdict.
_REJECTED_DIFFS = (
    select(Attempt.diff, Review.feedback)
    .join(Review, Review.attempt_id == Attempt.id)
    .where(Review.ticket_id == bindparam("ticket"), Review.decision == "rejected")
)


def approval(s: Session, ticket_id: int) -> Review | None:
    """The approval of a ticket (its branch and commit), if it was approved."""
    query = select(Review).where(Review.ticket_id == ticket_id, Review.decision == "approved").order_by(Review.id)
    return s.scalars(query).first()


def ticket_reviews(s: Session, ticket_id: int) -> Sequence[Review]:
    """Every review decision on a ticket, oldest first."""
    return s.scalars(select(Review).where(Review.ticket_id == ticket_id).order_by(Review.id)).all()
