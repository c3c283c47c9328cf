"""What a verdict does to its run and ticket (db/policy.after_verdict), written by prebuilt statements in the
verdict's transaction: on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from db import policy, queries
from db.engine import Database
from db.lifecycle import Verdict
from db.models import Attempt, Event, Notification, Run, Ticket
from tests.db.statements import statements_sent

HOOK = {"notify_url": "http://127.0.0.1:9/hook"}
PASSED = policy.Outcome(Verdict.PASSED, "", "tests pass")
FAILED = policy.Outcome(Verdict.FAILED, "fix tests/t.py::test_a", "1 target still fails")
ERROR = policy.Outcome(Verdict.ERROR, "", "the test command could not start")


@pytest.fixture
def db(migrated: Database) -> Database:
    return migrated


def ticket(db: Database, runs: int = 1, statuses: tuple[str, ...] = ("verifying",), **fields: Any) -> list[int]:
    """A running ticket whose repository asks for notifications, with one attempt per run in statuses; their ids."""
    with db.session() as s:
        repo = queries.add_repo(s, name=f"calc{runs}{len(fields)}", source="/calc", test_cmd="pytest", settings=HOOK)
        made = queries.add_ticket(
            s, ["shell"] * runs, repo_id=repo.id, title="add", base_ref="main", base_sha="a" * 40, agent="shell",
            status="running", **{"attempt_budget": 2, **fields},
        )  # fmt: skip
        attempts = [queries.add_attempt(s, run, "prompt") for run in made.runs]
        for attempt, status in zip(attempts, statuses, strict=True):
            attempt.status, attempt.diff = status, "--- a/calc.py\n+++ b/calc.py\n"
        return [attempt.id for attempt in attempts]


def conclude(db: Database, attempt_id: int, outcome: policy.Outcome) -> bool:
    with db.session() as s:
        return policy.after_verdict(s, policy.Standing.read(s, attempt_id), outcome)


def state(db: Database, attempt_id: int) -> dict[str, Any]:
    """The attempt's ticket as a reader finds it: statuses, events, notifications, attempts."""
    with db.session() as s:
        ticket_id = s.get_one(Attempt, attempt_id).ticket_id
        found = s.get_one(Ticket, ticket_id)
        attempts = s.scalars(select(Attempt).where(Attempt.ticket_id == ticket_id).order_by(Attempt.id)).all()
        events = s.scalars(select(Event.kind).where(Event.ticket_id == ticket_id).order_by(Event.id)).all()
        notes = s.scalars(select(Notification).where(Notification.ticket_id == ticket_id)).all()
        return {
            "ticket": (found.status, found.status_reason),
            "runs": [run.status for run in s.scalars(select(Run).where(Run.ticket_id == ticket_id).order_by(Run.id))],
            "attempts": [(a.run_id, a.number, a.status, a.finished_at is not None, a.feedback_in) for a in attempts],
            "events": list(events),
            "notifications": [(n.event, n.payload["status"], n.payload["title"], n.payload["repo"]) for n in notes],
        }


def test_a_pass_ends_its_run_and_puts_the_ticket_up_for_review_with_its_notification(db: Database) -> None:
    [attempt] = ticket(db)
    assert conclude(db, attempt, PASSED) is False
    found = state(db, attempt)
    assert found["ticket"] == ("needs_review", "a verified diff is waiting for review")
    assert found["runs"] == ["passed"]
    assert found["events"] == ["ticket_needs_review"]
    assert found["notifications"] == [("needs_review", "needs_review", "add", "calc10")]


def test_until_first_a_pass_cancels_the_other_runs_and_their_waiting_attempts(db: Database) -> None:
    queued, winner, running = ticket(db, runs=3, statuses=("queued", "verifying", "running"), until="first")
    assert conclude(db, winner, PASSED) is False
    found = state(db, winner)
    assert found["runs"] == ["cancelled", "passed", "cancelled"]
    by_attempt = {a: found["attempts"][n] for n, a in enumerate((queued, winner, running))}
    assert by_attempt[queued][2:4] == ("cancelled", True)
    assert by_attempt[running][2:4] == ("running", False)  # a leased attempt sees its run's end and stops itself
    assert found["ticket"][0] == "needs_review"
    assert found["events"] == ["siblings_stopped", "ticket_needs_review"]


def test_a_failure_with_attempts_left_queues_the_next_with_the_feedback(db: Database) -> None:
    [attempt] = ticket(db)
    assert conclude(db, attempt, FAILED) is True
    found = state(db, attempt)
    assert found["ticket"][0] == "running" and found["runs"] == ["active"]
    assert [a[1:3] for a in found["attempts"]] == [(1, "verifying"), (2, "queued")]
    assert found["attempts"][1][4] == FAILED.feedback
    assert found["events"] == found["notifications"] == []


def test_the_last_failure_fails_the_ticket_and_an_error_errs_it(db: Database) -> None:
    [last] = ticket(db, attempt_budget=1)
    assert conclude(db, last, FAILED) is False
    assert state(db, last)["ticket"] == ("failed", "1 target still fails")
    assert state(db, last)["notifications"][0][:2] == ("failed", "failed")
    broken, _ = ticket(db, runs=2, statuses=("verifying", "verifying"))
    assert conclude(db, broken, ERROR) is False
    assert state(db, broken)["ticket"][0] == "running"  # the other run may still pass
    assert state(db, broken)["events"] == []


def test_a_pass_on_a_diff_a_reviewer_rejected_is_a_failure_with_the_reviewers_words(db: Database) -> None:
    earlier, attempt = ticket(db, runs=2, statuses=("finished", "verifying"))
    with db.session() as s:
        ticket_id = s.get_one(Attempt, attempt).ticket_id
        queries.add_review(s, ticket_id=ticket_id, attempt_id=earlier, decision="rejected", feedback="use a loop")
    assert conclude(db, attempt, PASSED) is True
    found = state(db, attempt)
    assert found["runs"][1] == "active" and found["ticket"][0] == "running"
    assert "use a loop" in found["attempts"][-1][4] and "a reviewer already rejected" in found["attempts"][-1][4]


def test_a_pass_of_a_lone_run_reads_only_what_it_needs_and_logs_its_events_in_one_statement(db: Database) -> None:
    """Every verdict's transaction is on the worker's hot path: the rejected diffs are read only where there are,
    the runs' statuses only where the ticket has other runs, and the verdict's event and its ticket's go in one
    statement, in that order."""
    (attempt,) = ticket(db)
    with statements_sent(db.engine) as sent, db.session() as s:
        standing = policy.Standing.read(s, attempt)
        verdict = queries.event_row("passed", "tests pass", ticket_id=standing.ticket_id, attempt_id=attempt)
        policy.after_verdict(s, standing, PASSED, [verdict])
    assert state(db, attempt)["ticket"][0] == "needs_review"
    assert state(db, attempt)["events"] == ["passed", "ticket_needs_review"]
    assert [statement for statement in sent if "FROM attempts JOIN reviews" in statement] == []
    assert [statement for statement in sent if statement.startswith("SELECT runs.status")] == []
    assert len([statement for statement in sent if statement.startswith("INSERT INTO events")]) == 1


def test_a_cancelled_ticket_only_ends_the_run(db: Database) -> None:
    [attempt] = ticket(db)
    with db.session() as s:
        found = s.get_one(Ticket, s.get_one(Attempt, attempt).ticket_id)
        policy.cancel(s, found, "ann")
    before = state(db, attempt)
    assert conclude(db, attempt, PASSED) is False
    assert state(db, attempt) == before and before["ticket"][0] == "cancelled"


def test_a_ticket_cancelled_since_the_verdict_read_it_stays_cancelled(db: Database) -> None:
    [attempt] = ticket(db)
    with db.session() as s:
        standing = policy.Standing.read(s, attempt)
        s.get_one(Ticket, standing.ticket_id).status = "cancelled"  # another writer got in between
        s.flush()
        assert policy.after_verdict(s, standing, PASSED) is False
    found = state(db, attempt)
    assert found["ticket"][0] == "cancelled" and found["runs"] == ["passed"]
    assert found["events"] == found["notifications"] == []


def test_two_runs_that_fail_at_once_settle_the_ticket_between_them(db: Database) -> None:
    first, second = ticket(db, runs=2, statuses=("verifying", "verifying"), attempt_budget=1)
    with db.session() as s:
        assert policy.after_verdict(s, policy.Standing.read(s, first), FAILED) is False  # the other run is active
        other = threading.Thread(target=conclude, args=(db, second, FAILED))
        other.start()
        other.join(timeout=1.0)  # it waits for this transaction (without the ticket's lock it would not)
    other.join()
    assert state(db, first)["runs"] == ["failed", "failed"]
    assert state(db, first)["ticket"] == ("failed", "1 target still fails")


def test_a_run_a_siblings_pass_cancelled_meanwhile_gets_no_next_attempt(db: Database) -> None:
    winner, loser = ticket(db, runs=2, statuses=("verifying", "verifying"), until="first")
    with db.session() as s:
        assert policy.after_verdict(s, policy.Standing.read(s, winner), PASSED) is False
        other = threading.Thread(target=conclude, args=(db, loser, FAILED))
        other.start()
        other.join(timeout=1.0)  # it waits for the pass, then finds its run cancelled
    other.join()
    found = state(db, winner)
    assert found["runs"] == ["passed", "cancelled"] and found["ticket"][0] == "needs_review"
    assert [a[1:3] for a in found["attempts"]] == [(1, "verifying"), (1, "verifying")]  # no attempt 2 anywhere
