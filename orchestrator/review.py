"""Review: verified candidates best first; approve delivers the diff (delivery.py), reject sends words back."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from db import dashboard, lifecycle, policy, queries
from db.engine import Database
from db.lifecycle import TicketStatus, Verdict
from db.models import Attempt, Ticket
from db.specs import RepoSettings
from orchestrator import delivering, delivery, demo_model, views
from orchestrator.errors import FleetError, InvalidInput
from system import commit_text
from system.credentials import shown_url
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher


@dataclass(frozen=True)
class Candidate:
    """One verified diff and the attempts that produced it: agreement between runs is a signal."""

    attempt: Attempt  # the best of the attempts with this diff: the one approve lands and names
    same: tuple[Attempt, ...]  # every verified attempt with exactly this diff, best first
    runs: int  # how many runs produced this diff
    total_runs: int  # how many runs the ticket has
    before_feedback: bool = False  # every attempt with this diff ran before the reviewer's latest feedback

    @property
    def agreement(self) -> str:
        """'3 of 4 runs produced this diff', or '' when the ticket has one run."""
        return f"{self.runs} of {self.total_runs} runs produced this diff" if self.total_runs > 1 else ""


@dataclass(frozen=True)
class Decision:
    """What approve or reject did, as `--json` and the API answer it: the chosen attempt (run and attempt counted
    from 1), the branch and its commit for an approval, the new attempt for a rejection with feedback."""

    ticket: int
    status: TicketStatus
    chosen: dict[str, int]
    branch: str = ""
    commit: str = ""
    attempt: int | None = None
    pr_url: str = ""
    queued_to: str = ""  # the branch the merge queue lands it on (deliver = merge): nothing landed yet
    mirror: str = ""  # the branch is in Fleet's mirror there, not in a folder of the user's (registered by URL)

    @property
    def fetch(self) -> str:
        """The command that brings the branch from Fleet's mirror into a clone of the user's, or "" with no mirror."""
        return shlex.join(["git", "fetch", self.mirror, self.branch]) if self.mirror else ""

    def view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"id": self.ticket, "status": self.status.value, "chosen": self.chosen}
        if self.status == TicketStatus.APPROVED:
            landed = {"branch": self.branch, "commit": self.commit, "pr_url": self.pr_url}
            return view | landed | {"queued_to": self.queued_to, "mirror": self.mirror, "fetch": self.fetch}
        return view | {"attempt": self.attempt}


def chosen_attempt(attempt: Attempt) -> dict[str, int]:
    """The chosen attempt as approve and reject answer it: its id, its run and its number, counted from 1."""
    return {"id": attempt.id, "run": attempt.run.number, "number": attempt.number}


def candidates(ticket: Ticket, rejected: set[int] | frozenset[int] = frozenset()) -> list[Candidate]:
    """Verified diffs, best first: made after the reviewer's latest feedback, nothing flagged, more runs agreeing,
    smaller, fewer attempts, cheaper.

    A diff a reviewer rejected (any attempt in `rejected` that produced it) is never a candidate again. Once a
    reviewer sent feedback, the diffs made before it (other runs' of a fan-out) come after those made since: the
    reviewer asked for something they could not know.
    """
    passed = [a for run in ticket.runs for a in run.attempts if _passed(a)]
    refused = {a.diff.strip() for a in passed if a.id in rejected}
    groups: dict[str, list[Attempt]] = {}
    for attempt in sorted(passed, key=_rank):
        if attempt.diff.strip() not in refused:
            groups.setdefault(attempt.diff.strip(), []).append(attempt)
    asked = _feedback_asked_at(ticket)
    found = [
        Candidate(g[0], tuple(g), len({a.run_id for a in g}), len(ticket.runs), _before(g, asked))
        for g in groups.values()
    ]
    return sorted(found, key=lambda c: (c.before_feedback, *_rank(c.attempt, c.runs)))


def _feedback_asked_at(ticket: Ticket) -> int | None:
    """The attempt the reviewer's latest feedback started (made in the transaction that rejected), if ever: by id,
    which the database gives in order, where the clocks of the machines that made attempts may differ."""
    answering = [a.id for run in ticket.runs for a in run.attempts if _answers_reviewer(a)]
    return max(answering, default=None)


def _answers_reviewer(attempt: Attempt) -> bool:
    return (attempt.feedback_in or "").startswith(policy.REVIEWER_PREFIX)


def _before(same: list[Attempt], asked: int | None) -> bool:
    return asked is not None and all(a.id < asked for a in same)


def _passed(attempt: Attempt) -> bool:
    return attempt.verification is not None and attempt.verification.verdict == Verdict.PASSED.value


def candidate_view(c: Candidate, rank: int, texts: bool = True) -> dict[str, Any]:
    """A candidate as the CLI's --json, the API and the web show it: its best attempt (with its diff, transcript and
    prompt when `texts`), and who agreed."""
    return (
        views.attempt_view(c.attempt)
        | (views.attempt_texts(c.attempt) if texts else {})
        | {
            "rank": rank,
            "agent": c.attempt.run.agent,
            "runs_agreeing": c.runs,
            "agreement": c.agreement,
            "before_feedback": c.before_feedback,
            "same_diff_attempts": [a.id for a in c.same],
        }
    )


def review_queue(
    db: Database,
    repo: str | None = None,
    agent: str | None = None,
    limit: int | None = None,
    after: dashboard.ReviewMark | None = None,
    texts: bool = True,
) -> list[dict[str, Any]]:
    """Tickets waiting for review with their verified candidates, best first (`fleet review list`, the web, the
    API); a page of them is `limit` tickets after the mark `after`, of a repo or an agent (db.dashboard.review_tickets),
    and `texts` adds each candidate's diff, transcript and prompt (the web draws a bounded part of the diff)."""
    rows = []
    with db.session() as s:
        for ticket in dashboard.review_tickets(s, repo, agent, limit, after):
            tree = queries.load_ticket_tree(s, ticket.id)
            best = candidates(tree, queries.rejected_attempt_ids(s, ticket.id))
            rows.append(
                views.ticket_view(tree)
                | {
                    "candidates": [candidate_view(c, rank, texts) for rank, c in enumerate(best, start=1)],
                    "best_attempt": best[0].attempt.id if best else None,
                    "diff_stat": best[0].attempt.diff_stat if best else "",
                }
            )
    return rows


def _rank(attempt: Attempt, agreeing: int = 1) -> tuple[int, int, int, int, int, float, int]:
    flags = len(attempt.verification.flags) if attempt.verification else 0
    flaky = len(attempt.verification.flaky) if attempt.verification else 0
    return (flags, flaky, -agreeing, _diff_size(attempt), attempt.number, attempt.cost_usd, attempt.id)


def _diff_size(attempt: Attempt) -> int:
    return sum(1 for line in attempt.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def _reviewable(
    s: queries.Session, ticket_id: int, decision: TicketStatus, action: str, choice: Choice = None
) -> tuple[Ticket, Candidate]:
    ticket = _decided_on(s, ticket_id)
    refusal = f"ticket {ticket_id} is {ticket.status}, not waiting for review"
    lifecycle.require(ticket, decision, action, refusal)
    found = candidates(ticket, queries.rejected_attempt_ids(s, ticket_id))
    if not found:
        raise FleetError(f"ticket {ticket_id} has no verified diff")
    return ticket, chosen(found, choice, ticket_id)


def _decided_on(s: queries.Session, ticket_id: int) -> Ticket:
    """The ticket a decision is made on, read under its row lock and refused while an approval delivers it: a
    decision or a delivery's claim made at the same moment waits for this transaction, or this one for it, and then
    reads what it wrote (an unlocked read let a claim commit between a cancel's read and its write)."""
    queries.get_ticket(s, ticket_id, lock=True)
    ticket = queries.load_ticket_tree(s, ticket_id)
    delivering.refuse_while_delivering(ticket)
    return ticket


Choice = int | tuple[str, int] | None  # a rank (1 is the best), ("attempt", id), or None for the best


def chosen(found: list[Candidate], choice: Choice, ticket_id: int) -> Candidate:
    """The candidate a reviewer named: by rank as `fleet review show` lists them, or by an attempt's id (the web's
    buttons, which must not land another diff if the ranking changed since the page was drawn)."""
    if choice is None:
        return found[0]
    if isinstance(choice, int):
        if not 1 <= choice <= len(found):
            has = views.plural(len(found), "candidate")
            raise FleetError(f"ticket {ticket_id} has {has}: --candidate must be 1 to {len(found)}")
        return found[choice - 1]
    for c in found:
        if choice[1] in {a.id for a in c.same}:
            return c
    raise FleetError(f"attempt {choice[1]} is not a candidate of ticket {ticket_id} (rejected, or not verified)")


def approve(db: Database, settings: Settings, ticket_id: int, reviewer: str, choice: Choice = None) -> Decision:
    """Deliver the chosen verified diff (the best by default) as the repository's `deliver` setting says."""
    with db.session() as s:
        ticket, candidate = _reviewable(s, ticket_id, TicketStatus.APPROVED, "approve", choice)
        best = candidate.attempt
        item = delivery.Shipment(
            ticket_id=ticket_id,
            repo_key=f"repo-{ticket.repo_id}",
            source=ticket.repo.source,
            base_sha=ticket.base_sha,
            diff=best.diff,
            message=commit_message(ticket, candidate),
            title=commit_text.subject(ticket.title),  # GitHub writes it into the merge commit
            report=delivery.report(ticket, candidate.attempt, delivery.ticket_link(settings, ticket_id)),
            settings=RepoSettings.from_stored(ticket.repo.settings),
        )
        attempt_id, chosen = best.id, chosen_attempt(best)
        claim = delivering.claim(ticket, reviewer, settings)  # no other decision until this one is made
    with delivering.held(db, settings, claim):
        done = delivery.deliver(settings, item)
    where = f"branch {done.branch}" + (f" in Fleet's mirror {done.mirror}" if done.mirror else "")
    where += f" pushed to {shown_url(done.remote)}" if done.remote else ""
    where += f"; pull request {done.pr_url}" if done.pr_url else ""
    with db.session() as s:
        ticket = queries.get_ticket(s, ticket_id, lock=True)
        delivering.decided(ticket, claim, where)
        if done.pr_url:
            ticket.pr_url, ticket.pr_number = done.pr_url, done.pr_number
        queries.set_ticket_status(s, ticket, TicketStatus.APPROVED, f"approved by {reviewer}; {where}")
        queries.add_review(
            s,
            ticket_id=ticket_id,
            attempt_id=attempt_id,
            decision="approved",
            reviewer=reviewer,
            branch=done.branch,
            commit_sha=done.commit,
        )
        queries.log_event(s, "approved", where, ticket_id=ticket_id, attempt_id=attempt_id, actor=reviewer)
    return Decision(
        ticket_id,
        TicketStatus.APPROVED,
        chosen,
        branch=done.branch,
        commit=done.commit,
        pr_url=done.pr_url,
        mirror=done.mirror,
    )


def commit_message(ticket: Ticket, c: Candidate) -> str:
    """The branch commit names the attempt it came from (runs and attempts counted from 1, as users see them)."""
    agreed = f"; {c.agreement}" if c.agreement else ""
    where = f"run {c.attempt.run.number}, attempt {c.attempt.number}"
    return commit_text.commit_message(ticket.title, f"Fleet ticket {ticket.id}, {where} (verified{agreed}).")


def reject(
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    ticket_id: int,
    reviewer: str,
    feedback: str,
    choice: Choice = None,
) -> Decision:
    """Record the rejection of a candidate (the best by default); with feedback, its run gets a new attempt with
    the reviewer's words. The rejected diff is never a candidate again."""
    if "\x00" in feedback:  # PostgreSQL's text holds none: it was a server error, from the web's forms and API
        raise InvalidInput("the feedback holds a NUL character, which no text Fleet keeps may hold")
    with db.session() as s:
        ticket, candidate = _reviewable(s, ticket_id, TicketStatus.REJECTED, "reject", choice)
        if feedback.strip():
            demo_model.require_model_server(ticket)
        best = candidate.attempt
        queries.add_review(
            s, ticket_id=ticket_id, attempt_id=best.id, decision="rejected", reviewer=reviewer, feedback=feedback
        )
        queries.set_ticket_status(s, ticket, TicketStatus.REJECTED, f"rejected by {reviewer}")
        queries.log_event(s, "rejected", feedback, ticket_id=ticket_id, attempt_id=best.id, actor=reviewer)
        chosen = chosen_attempt(best)
        if not feedback.strip():
            return Decision(ticket_id, TicketStatus.REJECTED, chosen)
        words = f"{policy.REVIEWER_PREFIX}\n\n{feedback.strip()}"
        attempt = policy.reopen(s, best.run, words)
        queries.set_ticket_status(s, ticket, TicketStatus.QUEUED, "a new attempt with the reviewer's feedback")
        new_id = attempt.id
    dispatcher.kick(db, settings)
    return Decision(ticket_id, TicketStatus.QUEUED, chosen, attempt=new_id)


def retry(db: Database, dispatcher: Dispatcher, settings: Settings, ticket_id: int, actor: str) -> list[int]:
    """A failed, errored, cancelled or rejected ticket starts again: every run gets a new attempt and a fresh
    budget (a rejected diff is never a candidate again)."""
    with db.session() as s:
        ticket = _decided_on(s, ticket_id)
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


def cancel(db: Database, ticket_id: int, actor: str, spare_review: bool = False) -> bool:
    """Cancel a ticket; with spare_review, one waiting for review (even if it got there a moment ago) is left alone
    and False returned: `cancel --all` never drops verified diffs it was not told to."""
    with db.session() as s:
        ticket = _decided_on(s, ticket_id)
        if spare_review and ticket.status == TicketStatus.NEEDS_REVIEW:
            return False
        refusal = f"ticket {ticket_id} is {ticket.status}; only active or reviewable tickets cancel"
        lifecycle.require(ticket, TicketStatus.CANCELLED, "cancel", refusal)
        policy.cancel(s, ticket, actor)
    return True


LineComment = tuple[str, int, str]  # (file, line in the new version, the reviewer's words)


def with_line_comments(feedback: str, comments: list[LineComment]) -> str:
    """The reviewer's words, then one `calc.py:7: comment` line per line comment, as the next prompt shows them."""
    lines = [f"{_one_line(path)}:{line}: {' '.join(text.split())}" for path, line, text in comments if text.strip()]
    if not lines:
        return feedback.strip()
    return "\n".join([feedback.strip(), "", "Comments on lines of the diff:", *lines]).strip()


def _one_line(name: str) -> str:
    """A file name on one line: a newline in it cannot start a line of its own in the prompt."""
    return " ".join(name.splitlines())
