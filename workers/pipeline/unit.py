"""The unit of work both steps share: claim the attempt, run the step under its lease, record any error."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from db import lifecycle, policy, queries
from db.engine import transient
from db.lifecycle import AttemptStatus, TicketStatus, Verdict
from db.models import utcnow
from db.reasons import shown
from system.retry import retrying
from verification.digest import agent_run_feedback, environment_feedback
from workers import scheduler
from workers.journal import AGENT
from workers.pipeline.job import Job, budgets_of, job_of, job_secrets
from workers.pipeline.outcome import store_kept
from workers.queue import broker_down
from workers.runtime import WorkerRuntime
from workers.secrets import redact

log = logging.getLogger(__name__)
R = TypeVar("R")
N = TypeVar("N")


@dataclass(frozen=True)
class Unit:
    """A claimed attempt: its snapshot, the lease that fences every write, and the event that asks it to stop."""

    job: Job
    lease: queries.Lease
    cancel: threading.Event


def infrastructure(exc: BaseException) -> bool:
    """A database or broker that did not answer: never the attempt's verdict; the work goes back in line."""
    return transient(exc) or broker_down(exc)


def perform(
    rt: WorkerRuntime,
    attempt_id: int,
    leased: AttemptStatus,
    step: Callable[[WorkerRuntime, Unit], R],
    record: Callable[[WorkerRuntime, Unit, R], N],
    known: Job | None = None,
) -> N | None:
    """Claim the attempt into leased, run step while the lease is held, then record its result or its error;
    returns what record returned (None when nothing was recorded).

    known is the attempt's snapshot when this process has it already (its agent ended here): the claim is then
    the compare-and-set alone. A database or broker failure is no verdict: a result write is tried again with
    backoff, and if the failure lasts the attempt goes back in line (a finished outcome stays in the outcome
    journal)."""
    try:
        claimed = claim(rt, attempt_id, leased, known)
    except Exception as exc:
        if not infrastructure(exc):
            raise
        log.warning("attempt %s not claimed: %s; it is sent again", attempt_id, _unreachable(exc))
        return None
    if claimed is None:
        return None
    return perform_held(rt, held(rt, *claimed), step, record)


def held(rt: WorkerRuntime, job: Job, lease: queries.Lease) -> Unit:
    """The unit of an attempt claimed with lease: from now on this process's heartbeat renews it."""
    return Unit(job, lease, rt.leases.hold(lease.token, job.attempt_id))


def perform_held(
    rt: WorkerRuntime,
    unit: Unit,
    step: Callable[[WorkerRuntime, Unit], R],
    record: Callable[[WorkerRuntime, Unit, R], N],
) -> N | None:
    """perform() for a unit claimed already."""
    try:
        return _run(rt, unit, step, record)
    finally:
        rt.leases.drop(unit.lease.token)


def _run(
    rt: WorkerRuntime,
    unit: Unit,
    step: Callable[[WorkerRuntime, Unit], R],
    record: Callable[[WorkerRuntime, Unit, R], N],
) -> N | None:
    job, lease = unit.job, unit.lease
    if job.over_budget:
        durably(rt, unit, lambda: record_error(rt, job, lease, f"no attempt started: {job.over_budget}", ""))
        return None
    if _handed_back(rt, unit):  # claimed as the worker hands its work back: nothing is set up for it
        return None
    try:
        result = step(rt, unit)
    except BaseException as exc:
        if _stops_worker(exc):
            raise
        if infrastructure(exc):
            back_in_line(rt, unit, _unreachable(exc))
            return None
        reason, trace = _named(exc), traceback.format_exc()
        durably(rt, unit, lambda: record_error(rt, job, lease, reason, trace))
        return None
    if _handed_back(rt, unit):
        return None
    return durably(rt, unit, lambda: record(rt, unit, result))


def _handed_back(rt: WorkerRuntime, unit: Unit) -> bool:
    """True, with the attempt back in line and no verdict, once its worker hands its work back (the grace period
    after SIGTERM is over) and has cancelled it."""
    if not (rt.handing_back.is_set() and unit.cancel.is_set()):
        return False
    back_in_line(rt, unit, "the worker stopped")
    rt.handed_back.append(unit.job.attempt_id)
    return True


def durably(rt: WorkerRuntime, unit: Unit, write: Callable[[], N]) -> N | None:
    """write(), tried again with backoff while the database or broker does not answer; then back in line."""
    away = rt.journal.kept_while(unit.job.attempt_id, infrastructure)  # the outcome waits there, made durable
    try:
        return retrying(write, away, rt.settings.write_retry_seconds)
    except Exception as exc:
        if not infrastructure(exc):
            raise
        back_in_line(rt, unit, _unreachable(exc))
        return None


def back_in_line(rt: WorkerRuntime, unit: Unit, why: str) -> None:
    """Hand the attempt back with no verdict; if even that cannot be written, its lease lapses to the same end."""
    job = unit.job
    log.warning("attempt %s goes back in line, no verdict: %s", job.attempt_id, why)
    try:
        kept = rt.journal.load(job.attempt_id, AGENT, job.fingerprint)
        with rt.db.session() as s:
            waiting = queries.release(s, job.attempt_id, unit.lease, why)
            if waiting == AttemptStatus.QUEUED and kept is not None:  # a finished agent: its outcome goes along
                store_kept(s, job.attempt_id, kept)
            if waiting is not None:
                message = f"attempt {job.number}: back in line ({why}); no verdict"
                queries.log_event(s, "requeued", message, ticket_id=job.ticket_id, attempt_id=job.attempt_id)
        if waiting == AttemptStatus.VERIFY_QUEUED:
            rt.dispatcher.send([(job.attempt_id, waiting)])
        elif waiting is not None:
            scheduler.schedule(rt.db, rt.dispatcher, rt.settings)
    except Exception as exc:
        if not infrastructure(exc):
            raise
        log.warning("attempt %s: its lease lapses instead (%s)", job.attempt_id, _unreachable(exc))


def _unreachable(exc: BaseException) -> str:
    what = "the database" if transient(exc) else "the broker"
    return f"{what} did not answer ({type(exc).__name__})"


def claim(
    rt: WorkerRuntime, attempt_id: int, leased: AttemptStatus, known: Job | None = None
) -> tuple[Job, queries.Lease] | None:
    """The attempt's snapshot (known, else read) and lease, or None when a duplicate delivery or another worker
    has it."""
    lease = rt.new_lease()
    with rt.db.session() as s:
        job = claim_in(s, rt, attempt_id, leased, lease, known)
    return None if job is None else (job, lease)


def claim_in(
    s: queries.Session,
    rt: WorkerRuntime,
    attempt_id: int,
    leased: AttemptStatus,
    lease: queries.Lease,
    known: Job | None = None,
) -> Job | None:
    """claim() in the caller's transaction, with the caller's lease."""
    if leased == AttemptStatus.RUNNING:
        return claim_agents(s, rt, [(attempt_id, lease)])[0]
    (waiting,) = lifecycle.sources(leased, "claim")
    if not queries.claim(s, attempt_id, waiting, leased, lease):
        return None  # a duplicate delivery, or someone else has it: do nothing
    if known is not None:
        return known
    row = queries.attempt_row(s, attempt_id)
    if row["ticket_status"] == TicketStatus.QUEUED.value:
        queries.start_tickets(s, [row["ticket_id"]])
    return job_of(s, row)


def claim_agents(s: queries.Session, rt: WorkerRuntime, picks: list[tuple[int, queries.Lease]]) -> list[Job | None]:
    """Claim attempts for agent slots, each with its lease, in the caller's transaction: one statement of each kind
    for all of them (the claims, their rows, the tickets they start, the agent starts counted). Each one's Job, or
    None where a duplicate delivery or another worker got there first."""
    claimed = queries.claim_each(s, picks, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    found = queries.attempt_rows(s, sorted(claimed))
    queries.start_tickets(s, [r["ticket_id"] for r in found.values() if r["ticket_status"] == TicketStatus.QUEUED])
    jobs = {attempt_id: _agent_job(s, rt, row) for attempt_id, row in found.items()}
    # The agent's start is counted in the claim's own transaction, one wait for the database fewer per attempt.
    runnable = [(attempt_id, lease) for attempt_id, lease in picks if _runs_agent(jobs.get(attempt_id))]
    starts = queries.start_agents(s, runnable)
    return [
        replace(jobs[attempt_id], agent_start=starts.get(attempt_id, 0)) if attempt_id in jobs else None
        for attempt_id, _ in picks
    ]


def _agent_job(s: queries.Session, rt: WorkerRuntime, row: queries.RowMapping) -> Job:
    """The Job of an attempt claimed for its agent: what its budgets allow, and its agent's outcome when one was
    kept (on the row, or in this worker's journal)."""
    job = job_of(s, row)
    over = policy.over_budget(s, budgets_of(row, job))
    kept = job.kept_agent or rt.journal.load(job.attempt_id, AGENT, job.fingerprint)
    return replace(job, over_budget=over, kept_agent=kept)


def _runs_agent(job: Job | None) -> bool:
    return job is not None and job.over_budget is None and job.kept_agent is None


def _stops_worker(exc: BaseException) -> bool:
    """True for the worker being stopped, when an attempt must get no verdict and goes back in line.

    Python delivers signals (Ctrl-C, Celery's shutdown handlers) to the main thread only, so there a
    KeyboardInterrupt or SystemExit may be the stop: it propagates, the lease lapses and the reconciler sends
    the attempt again. In a slot thread nothing but the code the attempt ran can raise one (an agent's or a
    test helper's sys.exit()), and any BaseException there is that attempt's error: let through, it would leave
    the attempt `running`, retried at every lease expiry, forever.
    """
    return isinstance(exc, KeyboardInterrupt | SystemExit) and threading.current_thread() is threading.main_thread()


def _named(exc: BaseException) -> str:
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


@dataclass(frozen=True)
class Conclusion:
    """How an attempt ends: its last status and fields, the verification stored, the event, the policy's input."""

    status: AttemptStatus
    fields: dict[str, Any]
    verification: dict[str, Any]
    event: tuple[str, str]
    outcome: policy.Outcome


def conclude(rt: WorkerRuntime, job: Job, lease: queries.Lease, end: Conclusion) -> None:
    """Record the end while the lease still holds, let the policy act on the verdict, and fill the freed slot."""
    with rt.db.session() as s:
        if not queries.advance(s, job.attempt_id, lease, end.status, **end.fields):
            return fenced_off(job)
        standing = policy.Standing.read(s, job.attempt_id)
        queries.add_verification(s, job.attempt_id, **end.verification)
        kind, message = end.event
        # The worker that wrote the verdict: on a team of hosts, which machine to look at.
        verdict = queries.event_row(
            kind, message, ticket_id=job.ticket_id, attempt_id=job.attempt_id, actor=rt.worker_id
        )
        queued_more = policy.after_verdict(s, standing, end.outcome, [verdict])
        # A verification frees no agent slot (the agent's end refilled it): a pass is needed for a next attempt,
        # or when an error ended the attempt before its agent's end did.
        may_fill = queued_more or end.outcome.verdict == Verdict.ERROR
        sends = scheduler.plan(s, rt.settings) if may_fill else []
    rt.dispatcher.send(sends)
    rt.discard_attempt_dir(job.attempt_id)


def fenced_off(job: Job) -> None:
    """A write refused because the lease was lost (a partition, a pause): another worker owns the attempt now."""
    log.warning("attempt %s: lease lost; this worker's result is dropped, the new holder's stands", job.attempt_id)


def record_error(
    rt: WorkerRuntime,
    job: Job,
    lease: queries.Lease,
    reason: str,
    trace: str,
    recorded: dict[str, Any] | None = None,
    by_the_agent: bool = False,
) -> None:
    """A failure before any test ran: an `error` verdict that names the cause, and the ticket moves on. Its
    feedback says it is not the agent's doing, unless it was (by_the_agent: its run timed out or exited with
    nothing changed)."""
    secrets = job_secrets(job)
    reason, trace = shown(redact(reason, secrets)), redact(trace, secrets)
    log.warning("attempt %s: %s", job.attempt_id, reason)
    feedback = agent_run_feedback(reason) if by_the_agent else environment_feedback(reason)
    end = Conclusion(
        status=AttemptStatus.FINISHED,
        fields=dict(recorded or {}, error=reason, finished_at=utcnow()),
        verification=dict(verdict=Verdict.ERROR.value, reasons=[reason], output=trace, feedback=feedback),
        event=("error", f"attempt {job.number}: {reason}"),
        outcome=policy.Outcome(verdict=Verdict.ERROR, feedback="", reason=reason),
    )
    conclude(rt, job, lease, end)
