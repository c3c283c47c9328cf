"""PR feedback back to the agent: `/fleet` comments and "changes requested" reviews from allowed users, and failed
check runs, become a new attempt with those words, exactly as `fleet review reject --feedback` does.

Read by a reconciler pass (poll) and by the webhook at /api/hooks/github; each forge item is acted on once
(db.queries.first_sight), whichever of the two sees it first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db import lifecycle, policy, queries
from db.engine import Database
from db.lifecycle import TicketStatus
from db.specs import RepoSettings
from orchestrator.delivery import forge_for, scrub
from orchestrator.gitrepo import remote_url
from system.forge import ForgeError, Remark
from system.mirror import is_url
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher

log = logging.getLogger(__name__)
COMMAND = "/fleet"
PR_PREFIX = "The pull request of this change got feedback:"
MAX_WORDS = 20_000


def words_of(remark: Remark, allowed: set[str]) -> str | None:
    """What a remark tells the agent, or None when it is not for Fleet: a check run that did not pass, or from an
    allowed user a "changes requested" review or a comment starting with /fleet. Anyone else is ignored (their
    words would be a way to instruct the agent)."""
    if remark.kind == "check":
        return remark.text
    if remark.author.lower() not in allowed:
        return None
    if remark.kind == "review":
        return remark.text.strip() or "Changes were requested."
    text = remark.text.strip()
    if not (text == COMMAND or text.startswith(COMMAND + " ") or text.startswith(COMMAND + "\n")):
        return None
    words = text.removeprefix(COMMAND).strip()
    where = f"{' '.join(remark.path.splitlines())}:{remark.line}: " if remark.path else ""
    return f"{where}{words}" if words else None


def apply(
    db: Database, dispatcher: Dispatcher, settings: Settings, ticket_id: int, remarks: list[Remark]
) -> int | None:
    """The new attempt's id when remarks hold new feedback for an approved ticket with a PR; else None."""
    with db.session() as s:
        ticket = queries.load_ticket_tree(s, ticket_id)
        if ticket.status != TicketStatus.APPROVED.value or not ticket.pr_number:
            return None  # an attempt is already at work on earlier feedback; later words wait for its PR update
        approved = queries.last_approval(s, ticket_id)
        found = [a for run in ticket.runs for a in run.attempts if approved and a.id == approved.attempt_id]
        if not found or approved is None:
            return None
        attempt = found[0]  # the attempt the PR's branch holds
        allowed = {user.lower() for user in RepoSettings.from_stored(ticket.repo.settings).feedback_users}
        said = [(r, w) for r in remarks if (w := words_of(r, allowed)) is not None and _on(r, approved.commit_sha)]
        fresh = [f"{_who(r)}\n{w}" for r, w in said if queries.first_sight(s, ticket.repo_id, r.key, ticket_id)]
        if not fresh:
            return None
        feedback = "\n\n".join(fresh)[:MAX_WORDS]
        queries.add_review(
            s,
            ticket_id=ticket_id,
            attempt_id=attempt.id,
            decision="rejected",
            reviewer="pull-request",
            feedback=feedback,
        )
        lifecycle.require(ticket, TicketStatus.QUEUED, "reopen")
        new = policy.reopen(s, attempt.run, f"{PR_PREFIX}\n\n{feedback}")
        new.start_diff = attempt.diff  # based on the PR's branch: the agent continues from what the PR holds
        queries.set_ticket_status(s, ticket, TicketStatus.QUEUED, "a new attempt with the pull request's feedback")
        queries.log_event(
            s, "pr_feedback", feedback[:2000], ticket_id=ticket_id, attempt_id=new.id, actor="pull-request"
        )
        new_id = new.id
    dispatcher.kick(db, settings)
    return new_id


def _on(remark: Remark, head: str | None) -> bool:
    """A check speaks of the commit it ran on: only one of the PR's head is feedback. GitHub lists a check of an
    earlier commit of the branch with the PR too (its webhook's `pull_requests`), and such a check, ending after the
    PR was updated, would reopen the run with what an older diff did."""
    return remark.kind != "check" or (bool(head) and remark.sha == head)


def _who(remark: Remark) -> str:
    if remark.kind == "check":
        return "A check on the pull request failed:"
    kind = "requested changes" if remark.kind == "review" else "commented"
    return f"{' '.join(remark.author.split())} {kind}:"


def poll(db: Database, dispatcher: Dispatcher, settings: Settings) -> int:
    """One reconciler pass over the approved tickets with a PR; how many new attempts it started."""
    with db.session() as s:
        work = [
            (t.id, t.pr_number, remote_for(t.repo.source, t.repo.settings), t.repo.settings)
            for t in queries.pr_tickets(s)
        ]
        heads = {t: (a.commit_sha if (a := queries.last_approval(s, t)) else "") for t, *_ in work}
    started = 0
    for ticket_id, number, remote, stored in work:
        try:
            forge = forge_for(settings, RepoSettings.from_stored(stored), remote)
            state = forge.pr_state(int(number or 0))
            if state != "open":
                closed(db, ticket_id, state)
                continue
            remarks = forge.remarks(int(number or 0), heads[ticket_id] or "")
        except (ForgeError, ValueError, OSError) as exc:  # one unreachable forge never stops the others
            log.warning("reading the PR of ticket %s failed: %s", ticket_id, scrub(str(exc), settings))
            continue
        started += apply(db, dispatcher, settings, ticket_id, remarks) is not None
    return started


def closed(db: Database, ticket_id: int, state: str) -> None:
    """The PR was merged or closed on the forge: no more feedback is read from it (merged is notified)."""
    with db.session() as s:
        ticket = queries.get_ticket(s, ticket_id)
        ticket.pr_number = None
        queries.log_event(s, f"pr_{state}", ticket.pr_url, ticket_id=ticket_id, actor="pull-request")
        if state == "merged":
            queries.notify(s, ticket, "merged", f"pull request {ticket.pr_url} merged")


def remote_for(source: str, stored: dict[str, Any]) -> str:
    """A stored repository's remote (remote_of for a Shipment), "" when it has none."""
    given = str(stored.get("remote") or "")
    return given or (source if is_url(source) else remote_url(Path(source)))
