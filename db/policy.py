"""The dispatch policy: what happens to a ticket after each verdict, cancel, retry and reject."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from db import lifecycle, queries
from db.lifecycle import ACTIVE_TICKET, WAITING_ATTEMPT, AttemptStatus, RunStatus, TicketStatus, Verdict
from db.models import Attempt, Event, Run, Ticket, utcnow
from db.reasons import shown
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


@dataclass(frozen=True)
class Standing:
    """What the policy weighs after an attempt's verdict, read in one statement (queries.verdict_standing)."""

    attempt_number: int
    diff: str
    run_id: int
    run_index: int
    run_active: bool
    attempt_limit: int
    ticket_status: TicketStatus
    status_reason: str
    until: str
    cancel_requested: bool
    rejected_on_ticket: bool
    sibling_runs: int
    budgets: Budgets
    about: queries.About

    @classmethod
    def read(cls, s: queries.Session, attempt_id: int) -> Standing:
        row = queries.verdict_standing(s, attempt_id)
        daily = RepoSettings.from_stored(row["repo_settings"]).daily_budget_usd or 0.0
        ticket_id, repo_id, repo_name = row["ticket_id"], row["repo_id"], row["repo_name"]
        return cls(
            attempt_number=row["number"],
            diff=row["diff"] or "",
            run_id=row["run_id"],
            run_index=row["run_index"],
            run_active=row["run_status"] == RunStatus.ACTIVE.value,
            attempt_limit=row["attempt_limit"],
            ticket_status=TicketStatus(row["ticket_status"]),
            status_reason=row["status_reason"] or "",
            until=row["until"],
            cancel_requested=row["cancel_requested_at"] is not None,
            rejected_on_ticket=bool(row["rejected_on_ticket"]),
            sibling_runs=row["sibling_runs"],
            budgets=Budgets(ticket_id, row["budget_usd"] or 0.0, repo_id, repo_name, daily),
            about=queries.About(
                ticket_id,
                row["title"],
                row["ticket_status"],
                row["pr_url"] or "",
                repo_id,
                repo_name,
                row["repo_settings"],
            ),
        )

    @property
    def ticket_id(self) -> int:
        return self.about.ticket_id


def after_verdict(
    s: queries.Session, standing: Standing, outcome: Outcome, logged: Sequence[dict[str, Any]] = ()
) -> bool:
    """Record what a verdict means for the run and the ticket; a failure with budget left gets a next attempt.

    True when it queued that next attempt (the caller schedules it). Runs in the verdict's transaction, for every
    attempt: its reads and writes are prebuilt statements, and objects are loaded only to open a next attempt.
    logged: the caller's events (the verdict's), written in one statement with the run's and the ticket's."""
    events = list(logged)
    queued = _weigh(s, standing, outcome, events)
    queries.log_events(s, events)
    return queued


def _weigh(s: queries.Session, standing: Standing, outcome: Outcome, events: list[dict[str, Any]]) -> bool:
    if standing.cancel_requested or not standing.run_active:
        if standing.run_active:
            queries.end_run(s, standing.run_id, RunStatus.CANCELLED)
        return False  # the ticket was cancelled, or a sibling's pass stopped this run
    if outcome.verdict == Verdict.PASSED and (words := _rejected_before(s, standing)) is not None:
        outcome = Outcome(Verdict.FAILED, REJECTED_AGAIN.format(words=words), "the same diff a reviewer rejected")
    reason = outcome.reason
    if outcome.verdict == Verdict.PASSED:
        ended = RunStatus.PASSED
    elif outcome.verdict in (Verdict.FAILED, Verdict.GAMED) and standing.attempt_number < standing.attempt_limit:
        over = over_budget(s, standing.budgets)
        if over is None:
            next_attempt(s, queries.get_run(s, standing.run_id), outcome.feedback)
            return True
        ended, reason = RunStatus.FAILED, f"{outcome.reason}; no further attempt: {over}"
    else:
        ended = RunStatus.ERROR if outcome.verdict == Verdict.ERROR else RunStatus.FAILED
    if not queries.end_run(s, standing.run_id, ended):
        return False  # ended meanwhile by another transaction (a sibling's pass), whose policy settled the ticket
    if ended == RunStatus.PASSED and standing.until == UNTIL_FIRST:
        events.append(stop_siblings(s, standing))
    events.extend(settle(s, standing, ended, reason))
    return False


def _rejected_before(s: queries.Session, standing: Standing) -> str | None:
    """The reviewer's words when a reviewer already rejected this very diff on the ticket, else None."""
    if not standing.rejected_on_ticket:
        return None  # no diff of the ticket was rejected: no statement to find none
    return queries.rejected_diffs(s, standing.ticket_id).get(standing.diff.strip())


def stop_siblings(s: queries.Session, winner: Standing) -> dict[str, Any]:
    """--until first: the other runs of the ticket stop; their workers see it within a second or two. Returns
    the event to log."""
    queries.stop_other_runs(s, winner.ticket_id, winner.run_id)
    return queries.event_row("siblings_stopped", f"run {winner.run_index} passed first", ticket_id=winner.ticket_id)


def settle(s: queries.Session, standing: Standing, ended: RunStatus, reason: str) -> list[dict[str, Any]]:
    """Derive the ticket's status from its runs once its run has ended; returns the events to log."""
    statuses = set(queries.run_statuses(s, standing.ticket_id)) if standing.sibling_runs else {ended}
    current = standing.ticket_status
    if current not in ACTIVE_TICKET:
        return []
    if RunStatus.PASSED in statuses and (standing.until == UNTIL_FIRST or RunStatus.ACTIVE not in statuses):
        new, reason = TicketStatus.NEEDS_REVIEW, "a verified diff is waiting for review"
    elif RunStatus.ACTIVE in statuses or RunStatus.PASSED in statuses:
        return []
    elif statuses == {RunStatus.ERROR}:
        new = TicketStatus.ERROR
    elif RunStatus.CANCELLED not in statuses:
        new = TicketStatus.FAILED
    else:
        return [queries.event_row("ticket_" + current.value, standing.status_reason, ticket_id=standing.ticket_id)]
    if not queries.move_ticket(s, standing.about, current, new, reason):
        return []
    return [queries.event_row("ticket_" + new.value, shown(reason), ticket_id=standing.ticket_id)]


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
