"""What delivery and the forge leave in the database: forge items already acted on, and the notification outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.lifecycle import TicketStatus
from db.models import ForgeSeen, Notification, Review, Ticket, utcnow

# The ticket statuses a repository's notify_url hears about; the merge queue adds "merged" and "ejected" (notify).
NOTIFIED = {TicketStatus.NEEDS_REVIEW: "needs_review", TicketStatus.FAILED: "failed", TicketStatus.ERROR: "error"}


def first_sight(s: Session, repo_id: int, key: str, ticket_id: int | None = None) -> bool:
    """Record a forge item (a comment, a review, a check run, a webhook delivery); False when it was seen before.

    The unique (repo, key) row is the dedup: a poll and a webhook that race for one comment act on it once."""
    if s.scalar(select(ForgeSeen.id).where(ForgeSeen.repo_id == repo_id, ForgeSeen.key == key[:200])):
        return False
    try:
        with s.begin_nested():
            s.add(ForgeSeen(repo_id=repo_id, key=key[:200], ticket_id=ticket_id))
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class About:
    """What a notification tells of its ticket."""

    ticket_id: int
    title: str
    status: str
    pr_url: str
    repo_id: int
    repo_name: str
    repo_settings: dict[str, Any] | None

    @classmethod
    def of(cls, ticket: Ticket) -> About:
        repo = ticket.repo
        return cls(ticket.id, ticket.title, ticket.status, ticket.pr_url, repo.id, repo.name, repo.settings)


def notify(s: Session, ticket: Ticket | About, event: str, message: str = "") -> Notification | None:
    """Queue one notification of event on ticket, in the caller's transaction, if its repository has a notify_url."""
    about = ticket if isinstance(ticket, About) else About.of(ticket)
    if not (about.repo_settings or {}).get("notify_url"):
        return None
    payload: dict[str, Any] = {
        "event": event,
        "ticket": about.ticket_id,
        "title": about.title,
        "repo": about.repo_name,
        "status": about.status,
        "message": message,
        "pr_url": about.pr_url,
    }
    row = Notification(repo_id=about.repo_id, ticket_id=about.ticket_id, event=event, payload=payload)
    s.add(row)
    return row


def due_notifications(s: Session, now: datetime, max_tries: int, limit: int = 50) -> Sequence[Notification]:
    """Unsent notifications whose time has come and that were tried fewer than max_tries times, oldest first."""
    query = select(Notification).where(
        Notification.sent_at.is_(None), Notification.next_at <= now, Notification.tries < max_tries
    )
    return s.scalars(query.order_by(Notification.id).limit(limit)).all()


def claim_notification(s: Session, row: Notification, until: datetime) -> bool:
    """Take a notification for one sender until `until` (a conditional update: two senders never both send it)."""
    taken = s.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.sent_at.is_(None), Notification.next_at == row.next_at)
        .values(next_at=until, tries=Notification.tries + 1)
    )
    return bool(getattr(taken, "rowcount", 0))


def notification_done(s: Session, notification_id: int, error: str = "", retry_at: datetime | None = None) -> None:
    """Sent (no error), or failed with error and tried again at retry_at."""
    values: dict[str, Any] = {"last_error": error[:2000]}
    if error:
        values["next_at"] = retry_at or utcnow()
    else:
        values["sent_at"] = utcnow()
    s.execute(update(Notification).where(Notification.id == notification_id).values(**values))


def notifications(s: Session, ticket_id: int | None = None) -> Sequence[Notification]:
    query = select(Notification).order_by(Notification.id)
    if ticket_id is not None:
        query = query.where(Notification.ticket_id == ticket_id)
    return s.scalars(query).all()


def pr_tickets(s: Session) -> Sequence[Ticket]:
    """Approved tickets with an open pull request: the ones whose PR feedback the reconciler reads."""
    query = select(Ticket).where(Ticket.pr_number.is_not(None), Ticket.status == TicketStatus.APPROVED.value)
    return s.scalars(query.order_by(Ticket.id)).all()


def ticket_by_pr(s: Session, repo_id: int, number: int) -> Ticket | None:
    return s.scalar(select(Ticket).where(Ticket.repo_id == repo_id, Ticket.pr_number == number))


def ticket_by_issue(s: Session, repo_id: int, number: int) -> Ticket | None:
    return s.scalar(select(Ticket).where(Ticket.repo_id == repo_id, Ticket.issue_number == number))


def last_approval(s: Session, ticket_id: int) -> Review | None:
    """The ticket's latest approval: the commit its pull request's branch holds now."""
    query = select(Review).where(Review.ticket_id == ticket_id, Review.decision == "approved")
    return s.scalars(query.order_by(Review.id.desc())).first()
