"""db.tokens and db.dashboard on SQLite and PostgreSQL, through the migrations (0002 adds api_tokens)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from db import dashboard, tokens
from db.engine import Database
from db.migrate import upgrade
from db.models import utcnow
from db.queries import AlreadyExists, NotFound


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def test_tokens_roundtrip(db: Database) -> None:
    with db.session() as s:
        first = tokens.add_token(s, "alice", "admin", "a" * 64, "root")
        tokens.add_token(s, "bob", "viewer", "b" * 64)
        first_id = first.id
    with db.session() as s, pytest.raises(AlreadyExists):
        tokens.add_token(s, "alice", "viewer", "c" * 64)
    with db.session() as s:
        assert tokens.count_active(s) == 2
        found = tokens.find_active(s, first_id)
        assert found is not None and found.secret_hash == "a" * 64
        tokens.touch(s, found)
        assert found.last_used_at is not None
        tokens.revoke(s, first_id)
    with db.session() as s:
        assert tokens.find_active(s, first_id) is None
        assert [t.name for t in tokens.list_tokens(s)] == ["bob"]
        assert len(tokens.list_tokens(s, include_revoked=True)) == 2
        with pytest.raises(NotFound):
            tokens.revoke(s, 999)


def test_dashboard_queries_on_an_empty_fleet(db: Database) -> None:
    with db.session() as s:
        assert dashboard.find_tickets(s, "queued", "calc", "shell") == []
        assert dashboard.running_attempts(s) == []
        assert dashboard.verdicts_since(s, utcnow() - timedelta(days=1)) == []
        assert dashboard.review_backlog(s) == (0, None)
        assert dashboard.spend_since(s, utcnow()) == 0.0
        empty = dashboard.Histogram([0] * len(dashboard.DURATION_BOUNDS), 0.0, 0)
        assert dashboard.totals(s) == dashboard.Totals({}, empty, empty, 0.0)
        assert dashboard.ticket_statuses(s, [1, 2]) == {} and dashboard.newest_ticket_id(s) == 0
        for missing in (dashboard.get_run, dashboard.get_verification, dashboard.ticket_fingerprint):
            with pytest.raises(NotFound):
                missing(s, 1)


def test_duration_histograms_are_counted_by_the_database(db: Database) -> None:
    from db import queries

    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
        for seconds in (3.0, 30.0):
            attempt = queries.add_attempt(s, ticket.runs[0], "prompt")
            attempt.started_at = utcnow()
            attempt.agent_finished_at = attempt.started_at + timedelta(seconds=seconds)
            queries.add_verification(s, attempt.id, verdict="passed", duration=seconds / 3)
    with db.session() as s:
        totals = dashboard.totals(s)
    agents, verifications = totals.agent_seconds, totals.verification_seconds
    # DURATION_BOUNDS: 1, 5, 15, 30, 60, ...
    assert (agents.at_most[:5], agents.count, round(agents.total)) == ([0, 1, 1, 2, 2], 2, 33)
    assert (verifications.at_most[:5], verifications.count, round(verifications.total)) == ([1, 1, 2, 2, 2], 2, 11)
    assert totals.verdicts == {"passed": 2}
