"""A ticket whose attempts all went back in line with no verdict reads `queued`, not `running`: on a stop's
hand-back and on a lapsed lease, while another attempt of it (fan-out) still works it stays `running`."""

from __future__ import annotations

import threading
import time

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.models import Event, Ticket
from db.queries.leases import LAPSED
from tests.db.test_state_machine import db, lease

__all__ = ["db"]


def _fanned_out(db: Database, repo_name: str = "r") -> tuple[int, list[int]]:
    """A ticket with two runs (fan-out 2), each with its first attempt waiting: (ticket id, attempt ids)."""
    with db.session() as s:
        repo = queries.add_repo(s, name=repo_name, source="/nowhere", test_cmd="true")
        ticket = queries.add_ticket(
            s, ["shell", "shell"], repo_id=repo.id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
        return ticket.id, [queries.add_attempt(s, run, "prompt").id for run in ticket.runs]


def _claimed(db: Database, ticket_id: int, attempt_id: int, held: queries.Lease) -> None:
    """A worker's claim: the attempt runs, and its ticket with it."""
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, held)
        queries.start_tickets(s, [ticket_id])


def _ticket(db: Database, ticket_id: int) -> tuple[str, str]:
    with db.session() as s:
        ticket = s.get_one(Ticket, ticket_id)
        return ticket.status, ticket.status_reason


def test_a_ticket_goes_back_to_queued_once_its_last_running_attempt_is_handed_back(db: Database) -> None:
    ticket_id, (first, second) = _fanned_out(db)
    _claimed(db, ticket_id, first, lease("a"))
    _claimed(db, ticket_id, second, lease("b"))
    with db.session() as s:
        assert queries.release(s, first, lease("a"), "the worker stopped") == AttemptStatus.QUEUED
    assert _ticket(db, ticket_id) == ("running", "")  # its other agent still works
    with db.session() as s:
        assert queries.release(s, second, lease("b"), "the worker stopped") == AttemptStatus.QUEUED
    assert _ticket(db, ticket_id) == ("queued", "back in line, no verdict: the worker stopped")
    with db.session() as s:
        kinds = [e.kind for e in s.query(Event).filter_by(ticket_id=ticket_id).order_by(Event.id)]
        assert kinds.count("ticket_queued") == 1
    _claimed(db, ticket_id, first, lease("c"))  # the next worker picks it up
    assert _ticket(db, ticket_id) == ("running", "")


def test_a_ticket_whose_leases_lapsed_goes_back_to_queued_once_none_of_its_attempts_works(db: Database) -> None:
    ticket_id, (first, second) = _fanned_out(db)
    _claimed(db, ticket_id, first, lease("killed", seconds=0.01))
    _claimed(db, ticket_id, second, lease("alive"))
    time.sleep(0.05)
    with db.session() as s:
        assert queries.expire_leases(s) == [(first, AttemptStatus.QUEUED)]
    assert _ticket(db, ticket_id) == ("running", "")  # the live worker's agent still works
    with db.session() as s:
        assert queries.release(s, second, lease("alive"), "the worker stopped") == AttemptStatus.QUEUED
    assert _ticket(db, ticket_id)[0] == "queued"
    third_ticket, (only, _) = _fanned_out(db, "r2")
    _claimed(db, third_ticket, only, lease("killed again", seconds=0.01))
    time.sleep(0.05)
    with db.session() as s:
        assert queries.expire_leases(s) == [(only, AttemptStatus.QUEUED)]
    assert _ticket(db, third_ticket) == ("queued", LAPSED)


def test_two_attempts_of_one_ticket_handed_back_at_once_leave_it_queued(db: Database) -> None:
    """The second hand-back waits for the first to commit, and then sees that no attempt of the ticket works."""
    ticket_id, (first, second) = _fanned_out(db)
    _claimed(db, ticket_id, first, lease("a"))
    _claimed(db, ticket_id, second, lease("b"))
    released: list[AttemptStatus | None] = []
    other = threading.Thread(target=lambda: released.append(_release(db, second, lease("b"))))
    with db.session() as s:
        assert queries.release(s, first, lease("a")) == AttemptStatus.QUEUED
        other.start()
        time.sleep(0.5)  # the other hand-back is under way, waiting for this transaction
    other.join(30)
    assert released == [AttemptStatus.QUEUED]
    assert _ticket(db, ticket_id)[0] == "queued"


def _release(db: Database, attempt_id: int, held: queries.Lease) -> AttemptStatus | None:
    with db.session() as s:
        return queries.release(s, attempt_id, held)


def test_a_hand_back_under_way_while_another_attempt_is_claimed_leaves_the_ticket_running(db: Database) -> None:
    """A worker claims an attempt of a running ticket (read as running: nothing to start) while another worker hands
    the ticket's other attempt back: the hand-back waits for the claim and sees that attempt at work, instead of
    queuing the ticket under an agent that runs (PostgreSQL; SQLite's writers take turns)."""
    ticket_id, (first, second) = _fanned_out(db)
    _claimed(db, ticket_id, first, lease("a"))
    released: list[AttemptStatus | None] = []
    other = threading.Thread(target=lambda: released.append(_release(db, first, lease("a"))))
    with db.session() as s:
        assert queries.claim(s, second, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease("b"))
        if db.engine.dialect.name == "postgresql":  # on SQLite the hand-back would wait for this very session
            other.start()
            time.sleep(0.5)  # the hand-back is under way while the claim is not yet committed
    if not other.is_alive() and not released:
        other.start()
    other.join(30)
    assert released == [AttemptStatus.QUEUED]
    assert _ticket(db, ticket_id) == ("running", "")


def test_a_ticket_whose_other_attempt_waits_for_its_verification_stays_running(db: Database) -> None:
    """An agent ends and its attempt waits for its verification; the ticket's other attempt is handed back: the
    ticket's work is not over, so it stays `running` (its verdict settles only a running ticket), and the
    verification, claimed later, finds it so."""
    ticket_id, (first, second) = _fanned_out(db)
    _claimed(db, ticket_id, first, lease("a"))
    _claimed(db, ticket_id, second, lease("b"))
    with db.session() as s:
        assert queries.advance(s, second, lease("b"), AttemptStatus.VERIFY_QUEUED, diff="d")
    _release(db, first, lease("a"))
    assert _ticket(db, ticket_id)[0] == "running"
    with db.session() as s:
        assert queries.claim(s, second, AttemptStatus.VERIFY_QUEUED, AttemptStatus.VERIFYING, lease("c"))
    assert _ticket(db, ticket_id)[0] == "running"
