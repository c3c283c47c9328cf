"""The verdict's transaction: what the policy reads of an attempt and writes to its run and ticket, prebuilt
statements run for every attempt (db/policy.after_verdict)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import RowMapping, bindparam, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from db import lifecycle
from db.engine import one_of, rows
from db.lifecycle import WAITING_ATTEMPT, AttemptStatus, RunStatus, TicketStatus
from db.models import Attempt, Repo, Review, Run, Ticket, utcnow
from db.queries.errors import NotFound
from db.queries.forge import NOTIFIED, About, notify
from db.queries.tickets import attempt_select
from db.reasons import shown


def verdict_standing(s: Session, attempt_id: int) -> RowMapping:
    """What the policy weighs after an attempt's verdict: the columns of the attempt, its run, ticket and repository
    (db/policy.Standing), in one prebuilt statement and no objects. The ticket's row stays locked until the end of
    the transaction."""
    found = rows(s).execute(_STANDING, {"attempt": attempt_id}).mappings().first()
    if found is None:
        raise NotFound(f"unknown attempt {attempt_id}")
    return found


def run_statuses(s: Session, ticket_id: int) -> list[RunStatus]:
    """The statuses of the ticket's runs, as this transaction sees them."""
    return [RunStatus(status) for status in rows(s).execute(_RUN_STATUSES, {"ticket": ticket_id}).scalars()]


def end_run(s: Session, run_id: int, status: RunStatus) -> bool:
    """An active run ends with status; False when it had already ended."""
    ended = rows(s).execute(_END_RUNS[status], {"runs": [run_id], "now": utcnow()})
    return bool(ended.rowcount)


def stop_other_runs(s: Session, ticket_id: int, winner_run_id: int) -> None:
    """The ticket's other active runs are cancelled with their waiting attempts; a leased attempt sees its run's
    end and stops itself."""
    others = list(rows(s).execute(_OTHER_ACTIVE_RUNS, {"ticket": ticket_id, "winner": winner_run_id}).scalars())
    if others:
        rows(s).execute(_END_RUNS[RunStatus.CANCELLED], {"runs": others, "now": utcnow()})
        rows(s).execute(_CANCEL_WAITING, {"runs": others, "now": utcnow()})


def move_ticket(s: Session, about: About, old: TicketStatus, new: TicketStatus, reason: str) -> bool:
    """The ticket, read as old, moves to new (IllegalTransition when old cannot), with a notification when its
    repository asks for one. False when, since it was read, another transaction moved it where new cannot follow
    (a cancel): that status stands."""
    lifecycle.table(new).check(old, new)
    values = {"ticket": about.ticket_id, "reason": shown(reason), "now": utcnow()}
    if not rows(s).execute(_MOVE_TICKET[new], values).rowcount:
        return False
    if new in NOTIFIED:  # written with the status: the outbox sends it once, later, never holding this up
        notify(s, replace(about, status=new.value), NOTIFIED[new], reason)
    return True


# Built once: the verdict's transaction runs them for every attempt.
# Whether a reviewer rejected a diff of the ticket: only then does a pass compare its diff with theirs.
_REJECTED_ON_TICKET = exists().where(Review.ticket_id == Ticket.id, Review.decision == "rejected")
# The ticket's other runs: with none, the ended run's status is all its ticket's runs say (no statement to read).
# Runs are added only with their ticket (retry and reject reopen the runs there are), so the count stays true.
_SIBLING = aliased(Run)
_SIBLING_RUNS = select(func.count()).where(_SIBLING.ticket_id == Ticket.id, _SIBLING.id != Run.id).scalar_subquery()
_STANDING = (
    attempt_select(
        Attempt.id.label("attempt_id"),
        Attempt.number,
        Attempt.diff,
        Run.id.label("run_id"),
        Run.index.label("run_index"),
        Run.status.label("run_status"),
        Run.attempt_limit,
        Ticket.id.label("ticket_id"),
        Ticket.status.label("ticket_status"),
        Ticket.status_reason,
        Ticket.title,
        Ticket.until,
        Ticket.cancel_requested_at,
        Ticket.budget_usd,
        Ticket.pr_url,
        Repo.id.label("repo_id"),
        Repo.name.label("repo_name"),
        Repo.settings.label("repo_settings"),
        _REJECTED_ON_TICKET.label("rejected_on_ticket"),
        _SIBLING_RUNS.label("sibling_runs"),
    )
    .where(Attempt.id == bindparam("attempt"))
    # PostgreSQL: two runs of a ticket that end at once take turns, and the second reads its ticket and run as the
    # first left them (a run a sibling's pass cancelled gets no next attempt). NO KEY UPDATE: rows that point at
    # the ticket (events, attempts) may still be written meanwhile. SQLite's transactions take turns already.
    .with_for_update(of=(Ticket, Run), key_share=True)
)
_RUN_STATUSES = select(Run.status).where(Run.ticket_id == bindparam("ticket"))
_OTHER_ACTIVE_RUNS = select(Run.id).where(
    Run.ticket_id == bindparam("ticket"), Run.id != bindparam("winner"), Run.status == RunStatus.ACTIVE.value
)


def _end_runs(status: RunStatus) -> Any:
    sources, values = lifecycle.bulk(status, [RunStatus.ACTIVE])
    runs = Run.id.in_(bindparam("runs", expanding=True))
    return update(Run).where(runs, one_of(Run.status, sources)).values(**values, finished_at=bindparam("now"))


_END_RUNS = {status: _end_runs(status) for status in lifecycle.RUN.exits(RunStatus.ACTIVE)}
_WAITING, _CANCELLED = lifecycle.bulk(AttemptStatus.CANCELLED, WAITING_ATTEMPT)
_CANCEL_WAITING = (
    update(Attempt)
    .where(Attempt.run_id.in_(bindparam("runs", expanding=True)), one_of(Attempt.status, _WAITING))
    .values(**_CANCELLED, finished_at=bindparam("now"))
)


def _move_ticket(new: TicketStatus) -> Any:
    sources, values = lifecycle.bulk(new)
    return (
        update(Ticket)
        .where(Ticket.id == bindparam("ticket"), one_of(Ticket.status, sources))
        .values(**values, status_reason=bindparam("reason"), updated_at=bindparam("now"))
    )


_MOVE_TICKET = {status: _move_ticket(status) for status in TicketStatus if lifecycle.sources(status)}
