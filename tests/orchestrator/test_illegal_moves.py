"""A move the lifecycle refuses ends a CLI command with one line and exit code 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from db import queries
from db.engine import Database
from db.lifecycle import TicketStatus
from db.migrate import upgrade
from fleet.cli import app
from system.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    monkeypatch.setenv("FLEET_BROKER_URL", "embedded")
    return tmp_path / "home"


def add_ticket(home: Path, *moves: TicketStatus) -> int:
    """A ticket in the database of FLEET_HOME, moved through moves by the lifecycle."""
    home.mkdir(parents=True, exist_ok=True)
    db = Database(Settings().db_url)
    upgrade(db)
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
        for status in moves:
            queries.set_ticket_status(s, ticket, status)
        return ticket.id


def one_line_error(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_approving_a_queued_ticket_is_one_line(home: Path) -> None:
    ticket = add_ticket(home)
    assert one_line_error("review", "approve", str(ticket)) == (
        f"error: ticket {ticket} is queued, not waiting for review"
    )


def test_retrying_or_cancelling_an_approved_ticket_is_one_line(home: Path) -> None:
    ticket = add_ticket(home, TicketStatus.RUNNING, TicketStatus.NEEDS_REVIEW, TicketStatus.APPROVED)
    assert one_line_error("retry", str(ticket)) == (
        f"error: ticket {ticket} is approved; only failed, error, cancelled or rejected tickets retry"
    )
    assert one_line_error("cancel", str(ticket)) == (
        f"error: ticket {ticket} is approved; only active or reviewable tickets cancel"
    )


def test_a_bulk_cancel_spares_a_ticket_that_reached_review_since_it_was_listed(home: Path) -> None:
    from orchestrator.review import cancel

    waiting = add_ticket(home, TicketStatus.RUNNING, TicketStatus.NEEDS_REVIEW)
    db = Database(Settings().db_url)
    assert cancel(db, waiting, "me", spare_review=True) is False
    with db.session() as s:
        assert queries.get_ticket(s, waiting).status == "needs_review"
    assert cancel(db, waiting, "me") is True  # told to: the review queue is no exception
    with db.session() as s:
        assert queries.get_ticket(s, waiting).status == "cancelled"
    db.dispose()
