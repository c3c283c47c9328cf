"""Approving a verified diff: delivered at once (a branch, a push, a pull request), or through the merge queue when
the repository's `deliver` is `merge`."""

from __future__ import annotations

from db import queries
from db.engine import Database
from db.lifecycle import TicketStatus
from db.specs import RepoSettings
from orchestrator import merges, review
from orchestrator.dispatch import Dispatcher
from system.settings import Settings


def approve(
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    ticket_id: int,
    reviewer: str,
    choice: review.Choice = None,
) -> review.Decision:
    """What `fleet review approve` and the web's approve button do."""
    with db.session() as s:
        by_queue = RepoSettings.from_stored(queries.get_ticket(s, ticket_id).repo.settings).deliver == "merge"
        if by_queue:
            entry = merges.enqueue(s, ticket_id, reviewer, choice)
            chosen = review.chosen_attempt(queries.get_attempt(s, entry.attempt_id))
            target = entry.target
    if not by_queue:
        return review.approve(db, settings, ticket_id, reviewer, choice)
    dispatcher.kick(db, settings)
    return review.Decision(ticket_id, TicketStatus.APPROVED, chosen, queued_to=target)
