"""The dispatch policy: what happens to a ticket after each verdict, cancel, retry and reject."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from db import lifecycle, queries
from db.lifecycle import ACTIVE_TICKET, WAITING_ATTEMPT, AttemptStatus, RunStatus, TicketStatus, Verdict
from db.models import Attempt, Event, Run, Ticket, utcnow
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
    about = (ticket.title, ticket.body, ticket.repo.name, ticket.base_sha, ticket.targets)
    return prompt_text(ticket.id, *about, feedback=feedback)


def prompt_text(
    ticket_id: int, title: str, body: str, repo: str, base_sha: str, targets: Sequence[str], feedback: str = ""
) -> str:
    lines = [f"# Ticket {ticket_id}: {title}", "", body.strip(), ""]
    lines.append(f"Repository: {repo}, base commit {base_sha[:12]}.")
    if targets:
        lines.append("Tests that must pass: " + ", ".join(targets))
    if feedback:
        lines += ["", "## Feedback on your previous attempt", "", feedback.strip()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NewTicket:
    """A checked ticket ready to be written: its columns, one agent per run, and its repository's name."""

    fields: dict[str, Any]
    run_agents: list[str]
    repo: str

    def prompt(self, ticket_id: int) -> str:
        """Its first attempts' prompt, once it has its id."""
        f = self.fields
        return prompt_text(ticket_id, f["title"], f["body"], self.repo, f["base_sha"], f["targets"])


def open_tickets(s: queries.Session, new: Sequence[NewTicket]) -> list[int]:
    """Write tickets with their runs, first attempts and `submitted` events, in four INSERTs of many rows (however
    many tickets: a batch of ten thousand is not ten thousand flushes); returns the tickets' ids in order. The
    scheduler sends the attempts when slots are free."""
    ids = queries.insert_rows(s, Ticket, [n.fields for n in new])
    runs = [
        dict(ticket_id=ticket_id, index=index, agent=agent, attempt_limit=n.fields["attempt_budget"])
        for ticket_id, n in zip(ids, new, strict=True)
        for index, agent in enumerate(n.run_agents)
    ]
    run_ids = queries.insert_rows(s, Run, runs)
    prompts = {ticket_id: n.prompt(ticket_id) for ticket_id, n in zip(ids, new, strict=True)}
    attempts = [
        dict(run_id=run_id, ticket_id=run["ticket_id"], number=1, prompt=prompts[run["ticket_id"]])
        for run_id, run in zip(run_ids, runs, strict=True)
    ]
    queries.insert_rows(s, Attempt, attempts, returning=False)
    events = [
        dict(kind="submitted", message=n.fields["title"], ticket_id=ticket_id, actor=n.fields["submitted_by"])
        for ticket_id, n in zip(ids, new, strict=True)
    ]
    queries.insert_rows(s, Event, events, returning=False)
    return ids


def next_attempt(s: queries.Session, run: Run, feedback: str) -> Attempt:
    return queries.add_attempt(s, run, compose_prompt(run.ticket, feedback), feedback_in=feedback)


def reopen(s: queries.Session, run: Run, feedback: str) -> Attempt:
    """A new round on an ended run (retry, or a reviewer's rejection), with a fresh attempt budget."""
    attempt = next_attempt(s, run, feedback)
    lifecycle.move(run, RunStatus.ACTIVE)
    run.finished_at = None
    run.attempt_limit = attempt.number + run.ticket.attempt_budget - 1
    return attempt


@dataclass(frozen=True)
class Budgets:
    """What bounds a ticket's spending: its own budget and its repository's for each day (0: none)."""

    ticket_id: int
    ticket_usd: float
    repo_id: int
    repo_name: str
    daily_usd: float

    @classmethod
    def of(cls, ticket: Ticket) -> Budgets:
        daily = RepoSettings.from_stored(ticket.repo.settings).daily_budget_usd
        return cls(ticket.id, ticket.budget_usd or 0.0, ticket.repo_id, ticket.repo.name, daily or 0.0)


def over_budget(s: queries.Session, budgets: Budgets) -> str | None:
    """Why no new attempt may start for this ticket (its own budget, or its repo's for today), or None."""
    if budgets.ticket_usd:
        spent = queries.spend(s, ticket_id=budgets.ticket_id)
        if spent >= budgets.ticket_usd:
            return f"the ticket's budget of ${budgets.ticket_usd:.2f} is spent (${spent:.2f})"
    if budgets.daily_usd:
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        spent = queries.spend(s, repo_id=budgets.repo_id, since=midnight)
        if spent >= budgets.daily_usd:
            return f"repo {budgets.repo_name}'s daily budget of ${budgets.daily_usd:.2f} is spent (${spent:.2f} today)"
    return None


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
        over = over_budget(s, Budgets.of(ticket))
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
