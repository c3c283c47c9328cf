"""The dispatch policy: what happens to a ticket after each verdict, cancel, retry and reject."""

from __future__ import annotations

from dataclasses import dataclass

from db import lifecycle, queries
from db.lifecycle import ACTIVE_TICKET, WAITING_ATTEMPT, AttemptStatus, RunStatus, TicketStatus, Verdict
from db.models import Attempt, Run, Ticket, utcnow
from db.specs import RepoSettings

REJECTED_AGAIN = (
    "Verification: passed, but this is the diff a reviewer already rejected, so it is not offered for review "
    "again.\nNext: change it as the reviewer asked:\n{words}\n"
)
REVIEWER_PREFIX = "A reviewer rejected this change:"
UNTIL_FIRST, UNTIL_ALL = "first", "all"


@dataclass(frozen=True)
class Outcome:
    """A verification as the policy needs it."""

    verdict: Verdict
    feedback: str
    reason: str


def compose_prompt(ticket: Ticket, feedback: str = "") -> str:
    """The prompt an agent reads from FLEET_PROMPT_FILE: the ticket, then the feedback of the last attempt."""
    lines = [f"# Ticket {ticket.id}: {ticket.title}", "", ticket.body.strip(), ""]
    lines.append(f"Repository: {ticket.repo.name}, base commit {ticket.base_sha[:12]}.")
    if ticket.targets:
        lines.append("Tests that must pass: " + ", ".join(ticket.targets))
    if feedback:
        lines += ["", "## Feedback on your previous attempt", "", feedback.strip()]
    return "\n".join(lines) + "\n"


def start_runs(s: queries.Session, ticket: Ticket) -> None:
    """First attempts for every run of a new ticket; the scheduler sends them when slots are free."""
    prompt = compose_prompt(ticket)
    for run in ticket.runs:
        queries.add_first_attempt(s, run, prompt)


def next_attempt(s: queries.Session, run: Run, feedback: str) -> Attempt:
    return queries.add_attempt(s, run, compose_prompt(run.ticket, feedback), feedback_in=feedback)


def reopen(s: queries.Session, run: Run, feedback: str) -> Attempt:
    """A new round on an ended run (retry, or a reviewer's rejection), with a fresh attempt budget."""
    attempt = next_attempt(s, run, feedback)
    lifecycle.move(run, RunStatus.ACTIVE)
    run.finished_at = None
    run.attempt_limit = attempt.number + run.ticket.attempt_budget - 1
    return attempt


def over_budget(s: queries.Session, ticket: Ticket) -> str | None:
    """Why no new attempt may start for this ticket (its own budget, or its repo's for today), or None."""
    if ticket.budget_usd:
        spent = queries.spend(s, ticket_id=ticket.id)
        if spent >= ticket.budget_usd:
            return f"the ticket's budget of ${ticket.budget_usd:.2f} is spent (${spent:.2f})"
    daily = RepoSettings.from_stored(ticket.repo.settings).daily_budget_usd
    if daily:
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        spent = queries.spend(s, repo_id=ticket.repo_id, since=midnight)
        if spent >= daily:
            return f"repo {ticket.repo.name}'s daily budget of ${daily:.2f} is spent (${spent:.2f} today)"
    return None


def on_attempt_started(s: queries.Session, ticket: Ticket) -> None:
    if ticket.status == TicketStatus.QUEUED.value:
        queries.set_ticket_status(s, ticket, TicketStatus.RUNNING)


def after_verdict(s: queries.Session, attempt: Attempt, outcome: Outcome) -> bool:
    """Record what a verdict means for the run and the ticket; a failure with budget left gets a next attempt.

    True when it queued that next attempt (the caller schedules it)."""
    run, ticket = attempt.run, attempt.run.ticket
    if ticket.cancel_requested_at is not None or run.status != RunStatus.ACTIVE.value:
        if run.status == RunStatus.ACTIVE.value:
            queries.finish_run(s, run, RunStatus.CANCELLED)
        return False  # the ticket was cancelled, or a sibling's pass stopped this run
    if outcome.verdict == Verdict.PASSED and (words := _rejected_before(s, attempt)) is not None:
        outcome = Outcome(Verdict.FAILED, REJECTED_AGAIN.format(words=words), "the same diff a reviewer rejected")
    if outcome.verdict == Verdict.PASSED:
        queries.finish_run(s, run, RunStatus.PASSED)
        if ticket.until == UNTIL_FIRST:
            stop_siblings(s, run)
    elif outcome.verdict in (Verdict.FAILED, Verdict.GAMED) and attempt.number < run.attempt_limit:
        over = over_budget(s, ticket)
        if over is None:
            next_attempt(s, run, outcome.feedback)
            return True
        queries.finish_run(s, run, RunStatus.FAILED)
        settle(s, ticket, f"{outcome.reason}; no further attempt: {over}")
        return False
    else:
        queries.finish_run(s, run, RunStatus.ERROR if outcome.verdict == Verdict.ERROR else RunStatus.FAILED)
    settle(s, ticket, outcome.reason)
    return False


def _rejected_before(s: queries.Session, attempt: Attempt) -> str | None:
    """The reviewer's words when a reviewer already rejected this very diff on the ticket, else None."""
    return queries.rejected_diffs(s, attempt.run.ticket_id).get(attempt.diff.strip())


def stop_siblings(s: queries.Session, winner: Run) -> None:
    """--until first: the other runs of the ticket stop; their workers see it within a second or two."""
    for run in winner.ticket.runs:
        if run.id != winner.id and run.status == RunStatus.ACTIVE.value:
            queries.finish_run(s, run, RunStatus.CANCELLED)
            for attempt in run.attempts:
                _stop_waiting(attempt)
    queries.log_event(s, "siblings_stopped", f"run {winner.index} passed first", ticket_id=winner.ticket_id)


def settle(s: queries.Session, ticket: Ticket, reason: str) -> None:
    """Derive the ticket's status from its runs once a run has ended."""
    statuses = {RunStatus(run.status) for run in ticket.runs}
    current = TicketStatus(ticket.status)
    if current not in ACTIVE_TICKET:
        return
    if RunStatus.PASSED in statuses and (ticket.until == UNTIL_FIRST or RunStatus.ACTIVE not in statuses):
        queries.set_ticket_status(s, ticket, TicketStatus.NEEDS_REVIEW, "a verified diff is waiting for review")
    elif RunStatus.ACTIVE in statuses or RunStatus.PASSED in statuses:
        return
    elif statuses == {RunStatus.ERROR}:
        queries.set_ticket_status(s, ticket, TicketStatus.ERROR, reason)
    elif RunStatus.CANCELLED not in statuses:
        queries.set_ticket_status(s, ticket, TicketStatus.FAILED, reason)
    queries.log_event(s, "ticket_" + ticket.status, ticket.status_reason, ticket_id=ticket.id)


def cancel(s: queries.Session, ticket: Ticket, actor: str) -> None:
    """Ask every attempt of the ticket to stop; waiting ones stop now, running ones within seconds."""
    ticket.cancel_requested_at = utcnow()
    ticket.cancelled_by = actor
    for attempt in queries.open_attempts(s, ticket.id):
        _stop_waiting(attempt)
    for run in ticket.runs:
        if run.status == RunStatus.ACTIVE.value:
            queries.finish_run(s, run, RunStatus.CANCELLED)
    queries.set_ticket_status(s, ticket, TicketStatus.CANCELLED, f"cancelled by {actor}")
    queries.log_event(s, "cancelled", f"cancelled by {actor}", ticket_id=ticket.id, actor=actor)


def _stop_waiting(attempt: Attempt) -> None:
    """A waiting attempt is cancelled at once; a leased one sees the request and stops itself."""
    if AttemptStatus(attempt.status) in WAITING_ATTEMPT:
        lifecycle.move(attempt, AttemptStatus.CANCELLED)
        attempt.finished_at = utcnow()
