"""The verification step: judge an attempt's diff in a clean checkout against the baseline of its base commit."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from db import policy, queries
from db.lifecycle import AttemptStatus
from db.models import utcnow
from verification.envcache import EnvCache
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, errored, run_baseline, verify_diff
from workers.pipeline.job import Job, declared_paths, hidden_paths, job_secrets
from workers.pipeline.unit import Conclusion, Unit, conclude, perform
from workers.runtime import WorkerRuntime
from workers.secrets import redact


def spec_for(
    job: Job, settings_timeout: float, feedback_limit: int, setup_timeout: float, env_cache: EnvCache | None = None
) -> VerifySpec:
    extra: dict[str, Any] = {}
    if job.repo_settings.protect:
        extra["protect"] = tuple(job.repo_settings.protect)
    if job.repo_settings.hidden_tests:
        extra["hidden_tests"] = Path(job.repo_settings.hidden_tests)
    return VerifySpec(
        test_cmd=job.test_cmd,
        setup_cmd=job.setup_cmd,
        setup_timeout=setup_timeout,
        copy_files=job.copy_files,
        area=job.area,
        timeout=job.repo_settings.test_timeout or settings_timeout,
        targets=job.targets,
        allow_test_edits=job.repo_settings.allow_test_edits,
        network=job.repo_settings.test_network,
        feedback_limit=feedback_limit,
        env_cache=job.env_cache(env_cache) if env_cache else None,
        env_key_files=job.env_key_files,
        **extra,
    )


def spec_hash(spec: VerifySpec) -> str:
    """What a baseline depends on besides the commit: the command, the pins, and the hidden tests' content."""
    digest = hashlib.sha256()
    key = [
        spec.test_cmd,
        spec.setup_cmd,
        spec.copy_files,
        sorted(spec.protect),
        spec.pin_pytest,
        spec.sandbox,
        spec.network,
    ]  # not spec.env: it carries this run's port block and the machine's environment
    digest.update(json.dumps(key, default=str).encode())
    if spec.hidden_tests is not None:
        for path in sorted(p for p in spec.hidden_tests.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(spec.hidden_tests)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def verify_attempt(rt: WorkerRuntime, attempt_id: int) -> None:
    """Claim the attempt's verification, judge its diff in a clean checkout, and act on the verdict."""
    perform(rt, attempt_id, AttemptStatus.VERIFYING, _execute_verification, _record_verdict)


def _execute_verification(rt: WorkerRuntime, unit: Unit) -> tuple[VerificationResult, int | None]:
    job, cancel = unit.job, unit.cancel
    mirror = rt.mirror(job.repo_key, job.source, job.base_sha)
    pool = rt.pool(job.repo_key, "verify", mirror)
    spec = spec_for(
        job,
        rt.settings.test_timeout_seconds,
        rt.settings.feedback_limit_bytes,
        rt.settings.setup_timeout_seconds,
        rt.env_cache,
    )
    report_dir = rt.attempt_dir(job.attempt_id)
    with rt.ports.lease(job.ports) as ports:
        spec = replace(
            spec,
            env=dict(os.environ) | ports.env(),
            env_names=tuple(job.repo_settings.test_env),
            readable=declared_paths(rt, job),
            hidden=hidden_paths(rt, job),
        )
        baseline, baseline_id = _baseline(rt, job, spec, pool, report_dir / "baseline", cancel)
        if baseline.error:
            return _baseline_error(baseline), baseline_id
        with pool.lease(job.base_sha) as checkout:
            result = verify_diff(checkout.path, job.diff, spec, baseline, report_dir / "candidate", cancel)
    return result, baseline_id


def _baseline(
    rt: WorkerRuntime, job: Job, spec: VerifySpec, pool: Any, report_dir: Path, cancel: threading.Event
) -> tuple[TestRun, int | None]:
    """The test results at the base commit: from the database when known, else run once and stored."""
    key = spec_hash(spec)
    lock_key = f"{job.repo_id}:{job.base_sha}:{key}"
    with rt.baseline_lock(lock_key):
        known = rt.known_baseline(lock_key) or _stored_baseline(rt, job, key)
        if known is not None:
            rt.remember_baseline(lock_key, *known)
            return TestRun.from_json(known[0]), known[1]
        with pool.lease(job.base_sha) as checkout:
            run = run_baseline(checkout.path, spec, report_dir, cancel)
        if run.error:
            return run, None  # an environment failure is not a baseline worth keeping
        with rt.db.session() as s:
            stored = queries.save_baseline(s, job.repo_id, job.base_sha, key, run.to_json())
            result, baseline_id = stored.result, stored.id
        rt.remember_baseline(lock_key, result, baseline_id)
        return run, baseline_id


def _stored_baseline(rt: WorkerRuntime, job: Job, key: str) -> tuple[dict[str, Any], int] | None:
    """The baseline another process stored: (its result as JSON, its id)."""
    with rt.db.session() as s:
        known = queries.find_baseline(s, job.repo_id, job.base_sha, key)
        return None if known is None else (known.result, known.id)


def _baseline_error(baseline: TestRun) -> VerificationResult:
    return replace(errored(f"the tests could not run at the base commit: {baseline.error}"), output=baseline.output)


def _record_verdict(rt: WorkerRuntime, unit: Unit, outcome: tuple[VerificationResult, int | None]) -> None:
    (result, baseline_id), job = outcome, unit.job
    secrets = job_secrets(job)
    result = replace(
        result,
        output=redact(result.output, secrets),
        feedback=redact(result.feedback, secrets),
        reasons=[redact(r, secrets) for r in result.reasons],
    )
    reason = "; ".join(result.reasons)
    end = Conclusion(
        status=AttemptStatus.CANCELLED if unit.cancel.is_set() else AttemptStatus.FINISHED,
        fields=dict(finished_at=utcnow()),
        verification=dict(queries.stored_verification(result.to_json()), baseline_id=baseline_id),
        event=("verified", f"attempt {job.number}: {result.verdict.value}"),
        outcome=policy.Outcome(verdict=result.verdict, feedback=result.feedback, reason=reason),
    )
    conclude(rt, job, unit.lease, end)
