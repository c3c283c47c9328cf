"""`fleet gc`'s queries on SQLite and PostgreSQL alike: old settled attempts lose their text, nothing else does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus, TicketStatus
from db.migrate import upgrade
from db.models import BudgetHold, Notification, Repo, utcnow

TEXT = {"transcript": "agent said ✓\n", "diff": "+ a line\n"}
OUTPUT = "3 passed ✓\n"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def a_repo(s: Session) -> Repo:
    """The database's first repository, made when there is none."""
    found = queries.list_repos(s)
    return found[0] if found else queries.add_repo(s, name="r", source="/x", test_cmd="t")


def add(db: Database, ticket_status: TicketStatus, attempt_status: AttemptStatus, days_ago: float, sha: str) -> int:
    with db.session() as s:
        repo = a_repo(s)
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha=sha, agent="shell", attempt_budget=1
        )
        ticket.status = ticket_status.value
        attempt = queries.add_attempt(s, ticket.runs[0], "the prompt")
        attempt.status = attempt_status.value
        attempt.transcript, attempt.diff = TEXT["transcript"], TEXT["diff"]
        attempt.finished_at = utcnow() - timedelta(days=days_ago)
        queries.add_verification(s, attempt.id, verdict="error", reasons=["why"], output=OUTPUT, feedback="fb")
        return attempt.id


def test_old_settled_attempts_lose_their_text_and_keep_their_rows(db: Database) -> None:
    old_error = add(db, TicketStatus.ERROR, AttemptStatus.FINISHED, 40, "a" * 40)
    recent = add(db, TicketStatus.FAILED, AttemptStatus.FINISHED, 1, "a" * 40)
    awaiting = add(db, TicketStatus.NEEDS_REVIEW, AttemptStatus.FINISHED, 40, "b" * 40)
    running = add(db, TicketStatus.RUNNING, AttemptStatus.RUNNING, 40, "c" * 40)
    with db.session() as s:
        assert queries.open_attempt_ids(s, [old_error, recent, awaiting, running, 12345]) == {running}
        assert queries.base_commits(s) == {1: {"a" * 40, "b" * 40, "c" * 40}}
        count, size = queries.clear_attempt_text(s, utcnow() - timedelta(days=30))
    assert (count, size) == (1, sum(len(t.encode()) for t in (*TEXT.values(), OUTPUT)))
    with db.session() as s:
        attempts = {a: queries.get_attempt(s, a) for a in (old_error, recent, awaiting, running)}
        cleared = attempts.pop(old_error)
        assert (cleared.transcript, cleared.diff, cleared.prompt) == ("", "", "the prompt")
        assert cleared.verification is not None
        assert (cleared.verification.output, cleared.verification.verdict) == ("", "error")
        assert (cleared.verification.reasons, cleared.verification.feedback) == (["why"], "fb")
        for kept in attempts.values():
            assert kept.diff == TEXT["diff"] and kept.verification is not None and kept.verification.output == OUTPUT
        assert queries.clear_attempt_text(s, utcnow() - timedelta(days=30)) == (0, 0)


def test_what_dead_gates_of_old_settled_attempts_held_is_dropped(db: Database) -> None:
    settled, running = (add(db, TicketStatus.FAILED, AttemptStatus.FINISHED, 40, "a" * 40),
                        add(db, TicketStatus.RUNNING, AttemptStatus.RUNNING, 40, "b" * 40))  # fmt: skip
    with db.session() as s:
        for attempt_id in (settled, running):  # a worker killed mid-call left its gate's row
            queries.hold_budget(s, queries.GateHold(f"gate-{attempt_id}", attempt_id, "killed"), 0.5, first=True)
    with db.session() as s:
        queries.clear_attempt_text(s, utcnow() - timedelta(days=30))
    with db.session() as s:
        assert list(s.scalars(select(BudgetHold.attempt_id))) == [running]


def test_sent_notifications_older_than_the_age_are_deleted_and_due_ones_stay(db: Database) -> None:
    attempt = add(db, TicketStatus.FAILED, AttemptStatus.FINISHED, 40, "a" * 40)
    with db.session() as s:
        ticket = queries.get_ticket(s, queries.get_attempt(s, attempt).ticket_id)
        ticket.repo.settings = {"notify_url": "http://127.0.0.1:9/hook"}
        rows = [queries.notify(s, ticket, event) for event in ("failed", "error", "merged")]
        assert all(row is not None for row in rows)
        old_sent, recent_sent, old_due = rows
        old_sent.sent_at = utcnow() - timedelta(days=40)
        recent_sent.sent_at = utcnow() - timedelta(days=1)
        old_due.created_at = utcnow() - timedelta(days=40)
        s.flush()
        ids = [row.id for row in rows]
    with db.session() as s:
        assert queries.delete_sent_notifications(s, utcnow() - timedelta(days=30)) == 1
    with db.session() as s:
        left = {row.id for row in s.query(Notification)}
    assert left == set(ids[1:])
