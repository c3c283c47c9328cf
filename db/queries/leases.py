"""The attempt state machine: claims, fenced moves, leases and the reconciler's queries."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Connection, Select, Table, Update, and_, bindparam, case, func, select, update
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session

from db import lifecycle
from db.engine import one_of, rows
from db.lifecycle import (
    LEASED_ATTEMPT,
    WAITING_ATTEMPT,
    AttemptStatus,
    RunStatus,
)
from db.models import Attempt, Run, Ticket, utcnow
from db.queries.tickets import hand_back_tickets

_ATTEMPTS = cast(Table, Attempt.__table__)
_START_AGENTS = (
    update(Attempt)
    .where(
        Attempt.id.in_(bindparam("attempts", expanding=True)),
        Attempt.lease_token.in_(bindparam("tokens", expanding=True)),
    )
    .values(agent_runs=Attempt.agent_runs + 1)
    .returning(Attempt.id, Attempt.agent_runs)
)


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
    params = {"attempt": attempt_id, "owner": lease.owner, "token": lease.token, "expires": lease.expires()}
    return _changed(rows(s).execute(_claim_statement(waiting, leased), dict(params, now=utcnow()))) == 1


def claim_each(
    s: Session, picks: Sequence[tuple[int, Lease]], waiting: AttemptStatus, leased: AttemptStatus
) -> set[int]:
    """claim() of several attempts in one statement, each with its own lease (the leases of one worker: one owner,
    one term); the ids it claimed. The others went to another delivery first."""
    if not picks:
        return set()
    owner, seconds = picks[0][1].owner, picks[0][1].seconds
    if any(lease.owner != owner or lease.seconds != seconds for _, lease in picks):
        raise ValueError("the leases claimed together share their owner and term")
    params: dict[str, Any] = {"owner": owner, "expires": picks[0][1].expires(), "now": utcnow()}
    for n, (attempt_id, lease) in enumerate(picks):
        params[f"attempt_{n}"], params[f"token_{n}"] = attempt_id, lease.token
    return set(rows(s).scalars(_claim_each_statement(waiting, leased, len(picks)), params))


@functools.lru_cache(maxsize=64)
def _claim_each_statement(waiting: AttemptStatus, leased: AttemptStatus, count: int) -> Update:
    """Built once per move and number of attempts (a wave's ends claim up to twenty at once)."""
    ids = [bindparam(f"attempt_{n}", type_=_ATTEMPTS.c.id.type) for n in range(count)]
    tokens = [bindparam(f"token_{n}", type_=_ATTEMPTS.c.lease_token.type) for n in range(count)]
    token = case(*((Attempt.id == attempt, lease) for attempt, lease in zip(ids, tokens, strict=True)))
    sources, values = _claim_values(waiting, leased, token)
    chosen = (Attempt.id.in_(ids), one_of(Attempt.status, sources))
    return update(Attempt).where(*chosen).values(**values).returning(Attempt.id)


@functools.cache
def _claim_statement(waiting: AttemptStatus, leased: AttemptStatus) -> Update:
    """Built once per move: every attempt is claimed twice, and building the statement costs more than running it."""
    sources, values = _claim_values(waiting, leased, bindparam("token", type_=_ATTEMPTS.c.lease_token.type))
    chosen = (Attempt.id == bindparam("attempt"), one_of(Attempt.status, sources))
    return update(Attempt).where(*chosen).values(**values)


def _claim_values(waiting: AttemptStatus, leased: AttemptStatus, token: Any) -> tuple[list[str], dict[str, Any]]:
    """The statuses a claim moves from, and the columns it sets: the lease (token: its value or expression), and
    for an agent's claim its start."""
    sources, moved = lifecycle.bulk(leased, among=[waiting])
    values: dict[str, Any] = dict(
        moved,
        lease_owner=bindparam("owner", type_=_ATTEMPTS.c.lease_owner.type),
        lease_token=token,
        lease_expires_at=bindparam("expires", type_=_ATTEMPTS.c.lease_expires_at.type),
    )
    if leased == AttemptStatus.RUNNING:
        # An attempt whose agent already finished (taken again to hand its outcome over) keeps the start its run
        # time was counted from: /metrics' histogram counted it once, when the agent's end was recorded.
        now = bindparam("now", type_=_ATTEMPTS.c.started_at.type)
        values.update(started_at=case((Attempt.agent_finished_at.is_(None), now), else_=Attempt.started_at))
    return sources, values


# An attempt that no worker holds: what every release of a lease writes.
RELEASED: dict[str, None] = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


def advance(s: Session, attempt_id: int, lease: Lease, to: AttemptStatus, **values: Any) -> bool:
    """Move a leased attempt on, only while lease.token still holds it (fencing against zombies); values are the
    columns' new values (plain values, not SQL expressions)."""
    statement = _advance_statement(to, tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    return _changed(rows(s).execute(statement, dict(params, attempt=attempt_id, token=lease.token))) == 1


@functools.cache
def _advance_statement(to: AttemptStatus, columns: tuple[str, ...]) -> Update:
    """Built once per move and set of columns (a handful in all: the pipeline's few ways to end a step)."""
    sources, moved = lifecycle.bulk(to, among=LEASED_ATTEMPT)
    new = {name: bindparam(f"new_{name}", type_=_ATTEMPTS.c[name].type) for name in columns}
    held = (Attempt.id == bindparam("attempt"), Attempt.lease_token == bindparam("token"))
    return update(Attempt).where(*held, one_of(Attempt.status, sources)).values(**moved, **RELEASED, **new)


def release(s: Session, attempt_id: int, lease: Lease, why: str = "its worker stopped") -> AttemptStatus | None:
    """Hand a leased attempt back, with no verdict, for the scheduler to send again; None if the lease was lost.

    What the attempt already recorded (a finished agent's outcome) stays on the row. Its ticket is queued again
    when no other attempt of it is at work (why says what stopped them)."""
    found = select(Attempt.status, Attempt.ticket_id).where(
        Attempt.id == attempt_id, Attempt.lease_token == lease.token
    )
    row = s.execute(found).first()
    if row is None or AttemptStatus(row[0]) not in LEASED_ATTEMPT:
        return None
    waiting = lifecycle.ATTEMPT.moves("expire")[AttemptStatus(row[0])]
    sources, moved = lifecycle.bulk(waiting, among=[AttemptStatus(row[0])])
    result = s.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id, Attempt.lease_token == lease.token, Attempt.status.in_(sources))
        .values(**moved, **RELEASED, dispatched_at=None if waiting == AttemptStatus.QUEUED else utcnow())
    )
    if _changed(result) != 1:
        return None
    hand_back_tickets(s, [row[1]], f"back in line, no verdict: {why}")
    return waiting


def start_agents(s: Session, picks: Sequence[tuple[int, Lease]]) -> dict[int, int]:
    """Count an agent start on each attempt its lease still holds, in one statement: which start each one is (an
    attempt whose lease was lost is left out)."""
    if not picks:
        return {}
    params = {"attempts": [attempt_id for attempt_id, _ in picks], "tokens": [lease.token for _, lease in picks]}
    return {attempt_id: runs for attempt_id, runs in rows(s).execute(_START_AGENTS, params)}


def keep_agent_outcome(s: Session, attempt_id: int, run: int, **outcome: Any) -> bool:
    """Store the outcome of the attempt's agent start number `run`, whoever holds the lease now, unless the attempt
    has a finished outcome already.

    For an outcome whose worker lost its lease before the database answered: the next worker to claim the attempt
    takes it to verification instead of running the agent again. An agent started after this one finished (the
    outcome came too late for it) is a repeated agent run, and counted.
    """
    open_agent = Attempt.status.in_([AttemptStatus.QUEUED.value, AttemptStatus.RUNNING.value])
    where = (Attempt.id == attempt_id, Attempt.agent_finished_at.is_(None), open_agent)
    later = Attempt.agent_runs - run
    s.execute(update(Attempt).where(*where, later > 0).values(agent_repeats=Attempt.agent_repeats + later))
    return _changed(s.execute(update(Attempt).where(*where).values(**outcome))) == 1


class Journaled(NamedTuple):
    """What the reconciler reads of an attempt whose agent outcome its host's journal holds."""

    ticket_id: int
    run_id: int
    number: int
    created_at: datetime
    agent_finished: bool  # the outcome is in the database already
    leased: bool  # held under a lease its holder renews: that holder records the outcome itself


_JOURNALED = select(
    _ATTEMPTS.c.id,
    _ATTEMPTS.c.ticket_id,
    _ATTEMPTS.c.run_id,
    _ATTEMPTS.c.number,
    _ATTEMPTS.c.created_at,
    _ATTEMPTS.c.agent_finished_at.is_not(None),
    and_(_ATTEMPTS.c.status.in_(LEASED_ATTEMPT), _ATTEMPTS.c.lease_expires_at >= bindparam("renewed")),
).where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)))


def journaled(
    s: Session, attempt_ids: Sequence[int], lease_seconds: float, renewed_within: float
) -> dict[int, Journaled]:
    """The attempts of these ids that exist, in one statement; `leased` when the lease was renewed within the last
    renewed_within seconds (a renewal sets it to expire lease_seconds later), so a dead holder's lease is known
    stale well before it runs out and any worker's reconciler puts its attempt back in line."""
    renewed = utcnow() + timedelta(seconds=max(lease_seconds - renewed_within, 0.0))
    found = rows(s).execute(_JOURNALED, {"ids": list(attempt_ids), "renewed": renewed})
    return {row[0]: Journaled(row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6])) for row in found}


# One statement for every running agent's output: executed once per row (executemany) in one transaction.
_LIVE_TRANSCRIPT = (
    update(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.id == bindparam("attempt"),
        _ATTEMPTS.c.lease_token == bindparam("token"),
        _ATTEMPTS.c.status == AttemptStatus.RUNNING.value,
    )
    .values(transcript=bindparam("text"))
)


def store_live_transcripts(s: Session, outputs: Sequence[tuple[int, Lease, str]]) -> None:
    """Running agents' output so far, as (attempt id, lease, text): each kept only while its lease still holds
    the attempt and it runs (a late write for an attempt that moved on changes nothing). Written in the order of
    their ids, as a group of agents' ends is: two writers that lock rows in one order never deadlock."""
    if outputs:
        params = [
            {"attempt": attempt_id, "token": lease.token, "text": text}
            for attempt_id, lease, text in sorted(outputs, key=lambda output: output[0])
        ]
        rows(s).execute(_LIVE_TRANSCRIPT, params)


def renew_leases(s: Session, owner: str, tokens: Iterable[str], seconds: float) -> set[str]:
    """Extend every lease owner still holds; returns the tokens that are still held.

    On PostgreSQL a row another transaction has locked (an agent's end or its live output being written) is left
    for the next beat, not waited for: waiting, the renewal locked rows in its own order while those writers locked
    theirs in another, and the two deadlocked (and a heartbeat that waits is late for every lease it holds)."""
    tokens = list(tokens)
    if not tokens:
        return set()
    mine = select(Attempt.id).where(Attempt.lease_owner == owner, Attempt.lease_token.in_(tokens))
    s.execute(
        update(Attempt)
        .where(Attempt.id.in_(mine.with_for_update(skip_locked=True, key_share=True)))
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
    )
    held = s.scalars(select(Attempt.lease_token).where(Attempt.lease_token.in_(tokens)))
    return {t for t in held if t}


_CANCEL_REQUESTED = (
    select(Attempt.id)
    .join(Ticket, Ticket.id == Attempt.ticket_id)
    .join(Run, Run.id == Attempt.run_id)
    .where(
        Attempt.id.in_(bindparam("ids", expanding=True)),
        Ticket.cancel_requested_at.is_not(None) | (Run.status == RunStatus.CANCELLED.value),
    )
)


def cancel_requested(s: Session | Connection, attempt_ids: Iterable[int]) -> set[int]:
    """The attempts among attempt_ids whose ticket asked to be cancelled, or whose run was stopped (asked every
    second for every attempt a worker holds: the statement is built once)."""
    ids = list(attempt_ids)
    return set(s.scalars(_CANCEL_REQUESTED, {"ids": ids})) if ids else set()


LAPSED = "back in line, no verdict: its worker's lease lapsed"


def expire_leases(s: Session) -> list[tuple[int, AttemptStatus]]:
    """Put attempts whose lease ran out back in line, and their tickets none of whose attempts is at work any more;
    returns (id, waiting status) to re-send. In the order of their ids, as every writer of several attempts writes
    them; a lease renewed meanwhile stays."""
    back = lifecycle.ATTEMPT.moves("expire")
    now = utcnow()
    expired = s.execute(
        select(Attempt.id, Attempt.status, Attempt.lease_token, Attempt.ticket_id)
        .where(Attempt.status.in_(LEASED_ATTEMPT), Attempt.lease_expires_at < now)
        .order_by(Attempt.id)
    ).all()
    requeued, tickets = [], []
    for attempt_id, status, token, ticket_id in expired:
        waiting = back[AttemptStatus(status)]
        sources, moved = lifecycle.bulk(waiting, among=[AttemptStatus(status)])
        still_expired = (Attempt.id == attempt_id, Attempt.lease_token == token, Attempt.lease_expires_at < now)
        result = s.execute(
            update(Attempt)
            .where(*still_expired, Attempt.status.in_(sources))
            .values(
                **moved,
                **RELEASED,
                recoveries=Attempt.recoveries + 1,
                dispatched_at=utcnow(),
            )
        )
        if _changed(result) == 1:
            requeued.append((attempt_id, waiting))
            tickets.append(ticket_id)
    hand_back_tickets(s, tickets, LAPSED)
    return requeued


def undelivered(s: Session, older_than_seconds: float) -> list[tuple[int, AttemptStatus]]:
    """Waiting attempts not sent for a while (their message may be lost); stamps them as sent now."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return _stamp_sent(s, select(Attempt.id).where(*_waiting_since(cutoff)), cutoff)


def unclaimed(s: Session, older_than_seconds: float, limit: int) -> list[tuple[int, AttemptStatus]]:
    """Up to limit attempts sent a while ago that no worker took: with slots free, their messages were lost.

    Stamps them as sent now. The caller passes the slots free, so a busy fleet's backlog is never re-sent."""
    if limit <= 0:
        return []
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    oldest = select(Attempt.id).where(*_waiting_since(cutoff)).order_by(Attempt.dispatched_at).limit(limit)
    return _stamp_sent(s, select(Attempt.id).where(Attempt.id.in_(oldest)), cutoff)


def _waiting_since(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    return Attempt.status.in_(WAITING_ATTEMPT), Attempt.dispatched_at <= cutoff


def _stamp_sent(s: Session, chosen: Select[Any], cutoff: datetime) -> list[tuple[int, AttemptStatus]]:
    """Stamps the chosen attempts as sent now, if still waiting since cutoff; returns (id, status) of those
    stamped, to re-send (another worker's reconciler may have stamped one meanwhile).

    On PostgreSQL the rows are locked in the order of their ids, as every writer of several attempts locks them,
    and a row another transaction holds (most likely a worker claiming it) is skipped until the next pass."""
    locked = chosen.order_by(Attempt.id).with_for_update(skip_locked=True, key_share=True)
    stamped = s.execute(
        update(Attempt)
        .where(Attempt.id.in_(locked), *_waiting_since(cutoff))
        .values(dispatched_at=utcnow())
        .returning(Attempt.id, Attempt.status)
    ).all()
    return sorted((attempt_id, AttemptStatus(status)) for attempt_id, status in stamped)


def count_leased(s: Session) -> int:
    """Attempts a worker holds now (running an agent or a verification)."""
    query = select(func.count()).select_from(Attempt).where(Attempt.status.in_(LEASED_ATTEMPT))
    return int(s.scalar(query) or 0)


def _changed(result: Result[Any]) -> int:
    """How many rows an UPDATE changed (Session.execute types its result as a plain Result)."""
    return int(result.rowcount)  # type: ignore[attr-defined]
