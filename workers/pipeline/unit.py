"""The unit of work both steps share: claim the attempt, run the step under its lease, record any error."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from db import lifecycle, policy, queries
from db.lifecycle import AttemptStatus, Verdict
from db.models import utcnow
from verification.digest import environment_feedback
from workers import scheduler
from workers.pipeline.job import Job, job_secrets, snapshot
from workers.runtime import WorkerRuntime
from workers.secrets import redact

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class Unit:
    """A claimed attempt: its snapshot, the lease that fences every write, and the event that asks it to stop."""

    job: Job
    lease: queries.Lease
    cancel: threading.Event


def perform(
    rt: WorkerRuntime,
    attempt_id: int,
    leased: AttemptStatus,
    step: Callable[[WorkerRuntime, Unit], R],
    record: Callable[[WorkerRuntime, Unit, R], None],
) -> None:
    """Claim the attempt into leased, run step while the lease is held, then record its result or its error."""
    claimed = claim(rt, attempt_id, leased)
    if claimed is None:
        return
    job, lease = claimed
    if job.over_budget:
        record_error(rt, job, lease, f"no attempt started: {job.over_budget}", "")
        return
    unit = Unit(job, lease, rt.leases.hold(lease.token, attempt_id))
    try:
        result = step(rt, unit)
    except BaseException as exc:
        if _stops_worker(exc):
            raise
        record_error(rt, job, lease, _named(exc), traceback.format_exc())
        return
    finally:
        rt.leases.drop(lease.token)
    record(rt, unit, result)


def claim(rt: WorkerRuntime, attempt_id: int, leased: AttemptStatus) -> tuple[Job, queries.Lease] | None:
    """The attempt's snapshot and lease, or None when a duplicate delivery or another worker has it."""
    (waiting,) = lifecycle.sources(leased, "claim")
    lease = rt.new_lease()
    with rt.db.session() as s:
        if not queries.claim(s, attempt_id, waiting, leased, lease):
            return None  # a duplicate delivery, or someone else has it: do nothing
        attempt = queries.get_attempt(s, attempt_id)
        policy.on_attempt_started(s, attempt.run.ticket)
        over = policy.over_budget(s, attempt.run.ticket) if leased == AttemptStatus.RUNNING else None
        return replace(snapshot(attempt), over_budget=over), lease


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
            return  # the lease was lost: another worker owns this attempt now
        queries.add_verification(s, job.attempt_id, **end.verification)
        kind, message = end.event
        queries.log_event(s, kind, message, ticket_id=job.ticket_id, attempt_id=job.attempt_id)
        queued_more = policy.after_verdict(s, queries.get_attempt(s, job.attempt_id), end.outcome)
        # A verification frees no agent slot (the agent's end refilled it): a pass is needed for a next attempt,
        # or when an error ended the attempt before its agent's end did.
        may_fill = queued_more or end.outcome.verdict == Verdict.ERROR
        sends = scheduler.plan(s, rt.settings) if may_fill else []
    rt.dispatcher.send(sends)
    rt.discard_attempt_dir(job.attempt_id)


def record_error(
    rt: WorkerRuntime, job: Job, lease: queries.Lease, reason: str, trace: str, recorded: dict[str, Any] | None = None
) -> None:
    """An environment failure: an `error` verdict that names the cause, and the ticket moves on."""
    secrets = job_secrets(job)
    reason, trace = redact(reason, secrets), redact(trace, secrets)
    log.warning("attempt %s: %s", job.attempt_id, reason)
    end = Conclusion(
        status=AttemptStatus.FINISHED,
        fields=dict(recorded or {}, error=reason, finished_at=utcnow()),
        verification=dict(
            verdict=Verdict.ERROR.value, reasons=[reason], output=trace, feedback=environment_feedback(reason)
        ),
        event=("error", f"attempt {job.number}: {reason}"),
        outcome=policy.Outcome(verdict=Verdict.ERROR, feedback="", reason=reason),
    )
    conclude(rt, job, lease, end)
