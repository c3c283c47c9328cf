"""Review: verified candidates best first; approve lands the diff as a branch, reject sends words back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db import lifecycle, policy, queries
from db.engine import Database
from db.lifecycle import TicketStatus, Verdict
from db.models import Attempt, Ticket
from orchestrator import views
from orchestrator.errors import FleetError
from system.git import GitError, git
from system.mirror import ensure_mirror
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher


def candidates(ticket: Ticket) -> list[Attempt]:
    """Attempts with a passing verification, best first: nothing flagged, smaller diff, fewer attempts, cheaper."""
    passed = [
        a
        for run in ticket.runs
        for a in run.attempts
        if a.verification is not None and a.verification.verdict == Verdict.PASSED.value
    ]
    return sorted(passed, key=_rank)


def review_queue(db: Database) -> list[dict[str, Any]]:
    """Tickets waiting for review with their verified candidates, best first (`fleet review list`, the web)."""
    rows = []
    with db.session() as s:
        for ticket in queries.review_candidates(s):
            tree = queries.load_ticket_tree(s, ticket.id)
            best = candidates(tree)
            rows.append(
                views.ticket_view(tree)
                | {
                    "candidates": [views.attempt_view(a, with_text=True) for a in best],
                    "best_attempt": best[0].id if best else None,
                    "diff_stat": best[0].diff_stat if best else "",
                }
            )
    return rows


def _rank(attempt: Attempt) -> tuple[int, int, int, int, float, int]:
    flags = len(attempt.verification.flags) if attempt.verification else 0
    flaky = len(attempt.verification.flaky) if attempt.verification else 0
    return (flags, flaky, _diff_size(attempt), attempt.number, attempt.cost_usd, attempt.id)


def _diff_size(attempt: Attempt) -> int:
    return sum(1 for line in attempt.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def branch_name(ticket_id: int) -> str:
    return f"fleet/ticket-{int(ticket_id)}"


def _reviewable(s: queries.Session, ticket_id: int, decision: TicketStatus, action: str) -> tuple[Ticket, Attempt]:
    ticket = queries.load_ticket_tree(s, ticket_id)
    refusal = f"ticket {ticket_id} is {ticket.status}, not waiting for review"
    lifecycle.require(ticket, decision, action, refusal)
    best = candidates(ticket)
    if not best:
        raise FleetError(f"ticket {ticket_id} has no verified diff")
    return ticket, best[0]


def commit_diff(mirror: Path, base_sha: str, diff: str, message: str) -> str:
    """A commit of diff on base_sha, made with a private index: no worktree, no hooks, nothing run."""
    with tempfile.TemporaryDirectory(prefix="fleet-index-") as tmp:
        index = Path(tmp) / "index"
        git("read-tree", base_sha, cwd=mirror, index_file=index)
        git("apply", "--cached", "--whitespace=nowarn", "-", cwd=mirror, input=diff, index_file=index)
        tree = git("write-tree", cwd=mirror, index_file=index).strip()
    return git("commit-tree", tree, "-p", base_sha, "-F", "-", cwd=mirror, input=message).strip()


def approve(db: Database, settings: Settings, ticket_id: int, reviewer: str) -> str:
    """Land the best verified diff as branch fleet/ticket-N in the repository; returns the branch name."""
    with db.session() as s:
        ticket, best = _reviewable(s, ticket_id, TicketStatus.APPROVED, "approve")
        source, base_sha, repo_key = ticket.repo.source, ticket.base_sha, f"repo-{ticket.repo_id}"
        message = f"{ticket.title}\n\nFleet ticket {ticket.id}, attempt {best.number} (verified).\n"
        diff, attempt_id = best.diff, best.id
    branch = branch_name(ticket_id)
    try:
        mirror = ensure_mirror(settings.mirrors_dir, repo_key, source, base_sha)
        sha = commit_diff(mirror, base_sha, diff, message)
        git("push", "--end-of-options", source, f"{sha}:refs/heads/{branch}", cwd=mirror)
    except GitError as exc:
        raise FleetError(f"could not create branch {branch} in {source}: {exc.stderr or exc}") from None
    with db.session() as s:
        ticket = queries.get_ticket(s, ticket_id)
        queries.set_ticket_status(s, ticket, TicketStatus.APPROVED, f"approved by {reviewer}; branch {branch}")
        queries.add_review(
            s,
            ticket_id=ticket_id,
            attempt_id=attempt_id,
            decision="approved",
            reviewer=reviewer,
            branch=branch,
            commit_sha=sha,
        )
        queries.log_event(s, "approved", branch, ticket_id=ticket_id, attempt_id=attempt_id, actor=reviewer)
    return branch


def reject(
    db: Database, dispatcher: Dispatcher, settings: Settings, ticket_id: int, reviewer: str, feedback: str
) -> int | None:
    """Record the rejection; with feedback, the reviewed run gets a new attempt with the reviewer's words."""
    with db.session() as s:
        ticket, best = _reviewable(s, ticket_id, TicketStatus.REJECTED, "reject")
        queries.add_review(
            s, ticket_id=ticket_id, attempt_id=best.id, decision="rejected", reviewer=reviewer, feedback=feedback
        )
        queries.set_ticket_status(s, ticket, TicketStatus.REJECTED, f"rejected by {reviewer}")
        queries.log_event(s, "rejected", feedback, ticket_id=ticket_id, attempt_id=best.id, actor=reviewer)
        if not feedback.strip():
            return None
        words = f"{policy.REVIEWER_PREFIX}\n\n{feedback.strip()}"
        attempt = policy.reopen(s, best.run, words)
        queries.set_ticket_status(s, ticket, TicketStatus.QUEUED, "a new attempt with the reviewer's feedback")
        new_id = attempt.id
    dispatcher.kick(db, settings)
    return new_id


def retry(db: Database, dispatcher: Dispatcher, settings: Settings, ticket_id: int, actor: str) -> list[int]:
    """A failed, errored or cancelled ticket starts again: every run gets a new attempt and a fresh budget."""
    with db.session() as s:
        ticket = queries.load_ticket_tree(s, ticket_id)
        lifecycle.require(ticket, TicketStatus.QUEUED, "retry")
        if queries.open_attempts(s, ticket_id):
            raise FleetError(f"ticket {ticket_id} still has attempts stopping; try again in a few seconds")
        ticket.cancel_requested_at = None
        ticket.cancelled_by = None
        new = []
        for run in ticket.runs:
            last = run.attempts[-1] if run.attempts else None
            feedback = last.verification.feedback if last and last.verification else ""
            new.append(policy.reopen(s, run, feedback).id)
        queries.set_ticket_status(s, ticket, TicketStatus.QUEUED, f"retried by {actor}")
        queries.log_event(s, "retried", "", ticket_id=ticket_id, actor=actor)
    dispatcher.kick(db, settings)
    return new


CANCELLABLE = {s.value for s in lifecycle.sources(TicketStatus.CANCELLED, "cancel")}


def cancel(db: Database, ticket_id: int, actor: str, spare_review: bool = False) -> bool:
    """Cancel a ticket; with spare_review, one waiting for review (even if it got there a moment ago) is left alone
    and False returned: `cancel --all` never drops verified diffs it was not told to."""
    with db.session() as s:
        ticket = queries.load_ticket_tree(s, ticket_id)
        if spare_review and ticket.status == TicketStatus.NEEDS_REVIEW:
            return False
        refusal = f"ticket {ticket_id} is {ticket.status}; only active or reviewable tickets cancel"
        lifecycle.require(ticket, TicketStatus.CANCELLED, "cancel", refusal)
        policy.cancel(s, ticket, actor)
    return True


def cancel_repo(db: Database, repo: str, actor: str) -> list[int]:
    """Cancel every active or reviewable ticket of a repository; returns their ids."""
    with db.session() as s:
        queries.get_repo(s, repo)
        ids = sorted(t.id for t in queries.list_tickets(s, repo=repo, limit=1_000_000) if t.status in CANCELLABLE)
    for ticket_id in ids:
        cancel(db, ticket_id, actor)
    return ids
