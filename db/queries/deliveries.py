"""A ticket's delivery claim: an approval holds its ticket while it pushes (outside any transaction), so no other
decision lands in that window; the claim lapses when the approving process stops renewing it (it died)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Update, update
from sqlalchemy.orm import Session

from db.models import Ticket, utcnow
from db.queries.leases import _changed


def delivering_by(ticket: Ticket, now: datetime) -> str | None:
    """Who is delivering the ticket at `now`, or None: no claim, or one whose lease lapsed."""
    if ticket.delivering_until is None or ticket.delivering_until <= now:
        return None
    return ticket.delivering_by or "another approval"


def claim_delivery(ticket: Ticket, by: str, token: str, seconds: float) -> None:
    """Claim the ticket (already read under its lock) for a delivery: written with the transaction's other writes."""
    ticket.delivering_by, ticket.delivering_token = by, token
    ticket.delivering_until = utcnow() + timedelta(seconds=seconds)


def holds_delivery(ticket: Ticket, token: str) -> bool:
    """Whether the claim `token` still holds the ticket (read under its lock): no one claimed it after a lapse."""
    return ticket.delivering_token == token


def end_delivery(ticket: Ticket) -> None:
    """The claim's end, written with the decision the delivery makes."""
    ticket.delivering_by = ticket.delivering_token = ticket.delivering_until = None


def renew_delivery(s: Session, ticket_id: int, token: str, seconds: float) -> bool:
    """The claim `token` lasts `seconds` more; False when it no longer holds the ticket."""
    until = utcnow() + timedelta(seconds=seconds)
    result = s.execute(_fenced(ticket_id, token).values(delivering_until=until))
    return _changed(result) == 1


def release_delivery(s: Session, ticket_id: int, token: str) -> None:
    """The claim `token` ends with no decision (its delivery failed): the ticket is reviewable again at once."""
    s.execute(_fenced(ticket_id, token).values(delivering_by=None, delivering_token=None, delivering_until=None))


def _fenced(ticket_id: int, token: str) -> Update:
    return update(Ticket).where(Ticket.id == ticket_id, Ticket.delivering_token == token)
