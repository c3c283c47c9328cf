"""The verification step: judge an attempt's diff in a clean checkout against the baseline of its base commit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from db import policy, queries
from db.lifecycle import AttemptStatus, Verdict
from db.models import utcnow
from verification.runner import TestRun
from verification.verify import VerificationResult, errored, verify_diff
from workers.journal import VERIFY
from workers.pipeline.baselines import base_error, baseline_at, job_spec, spec_for, spec_hash, targets_for
from workers.pipeline.job import Job, job_secrets
from workers.pipeline.unit import Conclusion, Unit, conclude, perform
from workers.runtime import WorkerRuntime
from workers.secrets import redact

__all__ = ["spec_for", "spec_hash", "verify_attempt"]


def verify_attempt(rt: WorkerRuntime, attempt_id: int) -> None:
    """Claim the attempt's verification, judge its diff in a clean checkout, and act on the verdict."""
    perform(rt, attempt_id, AttemptStatus.VERIFYING, _execute_verification, _record_verdict)


def verify_here(rt: WorkerRuntime, job: Job) -> None:
    """Queue the verification of an attempt whose agent ended in this process, with no message: its snapshot is
    in hand, so the claim is the compare-and-set alone. It stays `verify_queued` until it begins."""
    rt.verify_later(_verify_known, job)


def _verify_known(rt: WorkerRuntime, job: Job) -> None:
    perform(rt, job.attempt_id, AttemptStatus.VERIFYING, _execute_verification, _record_verdict, known=job)


def _execute_verification(rt: WorkerRuntime, unit: Unit) -> dict[str, Any]:
    """The verification to store: the one kept from a finished run of this attempt's tests, else a new one."""
    job = unit.job
    kept = rt.journal.load(job.attempt_id, VERIFY, job.fingerprint)
    if kept is not None:
        return kept
    result, baseline_id = _verify(rt, unit)
    secrets = job_secrets(job)
    result = replace(
        result,
        output=redact(result.output, secrets),
        feedback=redact(result.feedback, secrets),
        reasons=[redact(r, secrets) for r in result.reasons],
    )
    stored = dict(queries.stored_verification(result.to_json()), baseline_id=baseline_id)
    if not unit.cancel.is_set():
        rt.journal.save(job.attempt_id, VERIFY, job.fingerprint, stored)
    return stored


def _verify(rt: WorkerRuntime, unit: Unit) -> tuple[VerificationResult, int | None]:
    job, cancel = unit.job, unit.cancel
    mirror = rt.mirror(job.repo_key, job.source, job.base_sha)
    pool = rt.pool(job.repo_key, "verify", mirror)
    report_dir = rt.attempt_folders.verification(job.attempt_id)
    with rt.ports.lease(job.ports) as ports:
        spec = job_spec(rt, job, ports.env())
        baseline, baseline_id = baseline_at(rt, job, spec, pool, report_dir / "baseline", cancel)
        if baseline.error:
            return _baseline_error(baseline), baseline_id
        chosen = targets_for(rt, job, spec, pool, baseline, report_dir, cancel)
        spec = replace(spec, known=chosen.known)
        with pool.lease(job.base_sha) as checkout:
            result = verify_diff(checkout.path, job.diff, spec, baseline, report_dir / "candidate", cancel)
    return result, baseline_id


def _baseline_error(baseline: TestRun) -> VerificationResult:
    return replace(errored(base_error(baseline)), output=baseline.output)


def _record_verdict(rt: WorkerRuntime, unit: Unit, stored: dict[str, Any]) -> None:
    job, verdict = unit.job, Verdict(stored["verdict"])
    reason = "; ".join(stored.get("reasons", []))
    end = Conclusion(
        status=AttemptStatus.CANCELLED if unit.cancel.is_set() else AttemptStatus.FINISHED,
        fields=dict(finished_at=utcnow()),
        verification=stored,
        event=("verified", f"attempt {job.number}: {verdict.value}"),
        outcome=policy.Outcome(verdict=verdict, feedback=stored.get("feedback", ""), reason=reason),
    )
    conclude(rt, job, unit.lease, end)
