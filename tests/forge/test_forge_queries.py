"""The forge's rows on SQLite and PostgreSQL alike: an item is seen once, a notification is claimed by one sender."""

from __future__ import annotations

from datetime import timedelta

import pytest

from db import queries
from db.engine import Database
from db.lifecycle import TicketStatus
from db.migrate import upgrade
from db.models import Notification, utcnow


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def _ticket(db: Database, notify_url: str) -> int:
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/x", test_cmd="t", settings={"notify_url": notify_url})
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="a" * 40, agent="shell"
        )
        queries.set_ticket_status(s, ticket, TicketStatus.RUNNING)
        queries.set_ticket_status(s, ticket, TicketStatus.FAILED, "no attempt passed")
        return ticket.id


def test_an_item_is_seen_once(db: Database) -> None:
    ticket = _ticket(db, "")
    with db.session() as s:
        repo_id = queries.get_ticket(s, ticket).repo_id
        assert queries.first_sight(s, repo_id, "comment:1", ticket)
        assert not queries.first_sight(s, repo_id, "comment:1", ticket)
        assert queries.first_sight(s, repo_id, "comment:2")
    with db.session() as s:
        assert not queries.first_sight(s, repo_id, "comment:2")


def test_a_status_change_writes_one_notification_and_one_sender_claims_it(db: Database) -> None:
    ticket = _ticket(db, "http://127.0.0.1:9/hook")
    now = utcnow()
    with db.session() as s:
        [row] = queries.due_notifications(s, now, max_tries=3)
        assert (row.ticket_id, row.event, row.payload["message"]) == (ticket, "failed", "no attempt passed")
        stale = Notification(id=row.id, next_at=row.next_at)  # what a second sender read before the first claimed
        assert queries.claim_notification(s, row, now + timedelta(seconds=60))
    with db.session() as s:
        assert queries.due_notifications(s, now, max_tries=3) == []  # held by its sender
        assert not queries.claim_notification(s, stale, now + timedelta(seconds=60))
        queries.notification_done(s, stale.id, "the webhook answered 500", now)
    with db.session() as s:
        [row] = queries.due_notifications(s, utcnow(), max_tries=3)
        assert (row.tries, row.last_error) == (1, "the webhook answered 500")
        queries.notification_done(s, row.id)
    with db.session() as s:
        assert queries.due_notifications(s, utcnow(), max_tries=3) == []


def test_no_notify_url_no_notification(db: Database) -> None:
    ticket = _ticket(db, "")
    with db.session() as s:
        assert queries.notifications(s, ticket) == []
