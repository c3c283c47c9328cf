"""The delivery claim as the control plane holds it: an approval claims its ticket in the transaction that reads it,
renews the claim while it pushes, and ends it with its decision, or releases it when the delivery fails. Every other
decision on a claimed ticket (reject, approve, enqueue, retry, cancel) is refused with one line meanwhile."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from db import queries
from db.engine import Database, log_failure
from db.lifecycle import TicketStatus
from db.models import Ticket, utcnow
from orchestrator.errors import FleetError
from system.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """An approval's hold on its ticket while it delivers."""

    ticket_id: int
    token: str


def refuse_while_delivering(ticket: Ticket) -> None:
    """One line when an approval is delivering the ticket now (a lapsed claim, whose process died, is no claim)."""
    by = queries.delivering_by(ticket, utcnow())
    if by is not None:
        raise FleetError(f"ticket {ticket.id} is being delivered by {by}; try again in a few seconds")


def claim(ticket: Ticket, by: str, settings: Settings) -> Claim:
    """Claim the ticket (read under its lock, and refused if claimed) for a delivery by `by`."""
    token = secrets.token_hex(16)
    queries.claim_delivery(ticket, by, token, settings.lease_seconds)
    return Claim(ticket.id, token)


@contextmanager
def held(db: Database, settings: Settings, taken: Claim) -> Iterator[None]:
    """The claim renewed every heartbeat while the block delivers; released when the block fails, so the ticket is
    reviewable again at once (the block's success ends it with the decision: `decided`)."""
    stop = threading.Event()
    keeper = threading.Thread(target=_renew, args=(db, settings, taken, stop), name="fleet-delivering", daemon=True)
    keeper.start()
    try:
        yield
    except BaseException:
        _stop(stop, keeper)
        _release(db, taken)
        raise
    _stop(stop, keeper)


def decided(ticket: Ticket, taken: Claim, done: str) -> None:
    """End the claim with the decision written in the same transaction (the ticket read under its lock); refused
    when the claim lapsed and someone decided meanwhile: `done` says what the delivery did all the same."""
    if not queries.holds_delivery(ticket, taken.token) or ticket.status != TicketStatus.NEEDS_REVIEW.value:
        raise FleetError(f"ticket {ticket.id}: {done}, but its claim lapsed and it is {ticket.status} now")
    queries.end_delivery(ticket)


def _renew(db: Database, settings: Settings, taken: Claim, stop: threading.Event) -> None:
    while not stop.wait(settings.heartbeat_seconds):
        try:
            with db.session() as s:
                queries.renew_delivery(s, taken.ticket_id, taken.token, settings.lease_seconds)
        except Exception as exc:  # the next beat tries again; the claim lapses if none gets through
            log_failure(log, f"renewing the delivery claim of ticket {taken.ticket_id}", exc)


def _stop(stop: threading.Event, keeper: threading.Thread) -> None:
    stop.set()
    keeper.join()


def _release(db: Database, taken: Claim) -> None:
    try:
        with db.session() as s:
            queries.release_delivery(s, taken.ticket_id, taken.token)
    except Exception as exc:  # the delivery's own error is the one to show; the claim lapses on its own
        log_failure(log, f"releasing the delivery claim of ticket {taken.ticket_id}", exc)
