"""Verify one merge queue build: the repository's whole test suite at the speculative commit, in a clean pooled
checkout, confined and pinned as every verification is (verification/verify.py's runner).

The build is claimed with a lease that a thread renews while the tests run; a worker killed mid-build lets it
lapse and the next pass sends the same build again. The verdict is written only while the lease still holds and
the entry still has this very build (a reset in between refuses it), then a pass lands what it can. A build Fleet
itself could not verify (its mirror unreachable, a checkout out of order) is no verdict on the diffs: it is given
back and sent again, MOST_BUILD_ERRORS times at most.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from db import queries
from db.engine import log_failure
from db.lifecycle import MergeStatus
from db.mergeplan import Conflict
from system.cancel import Cancellation
from system.files import remove_tree
from system.mirror import has_commit
from verification.judge import untrusted
from verification.report import TestResult
from verification.verify import run_build
from workers.merge_git import Stamp, build_commit
from workers.merge_queue import SendAttempts, SendBuilds, advance, build_inputs
from workers.pipeline.baselines import job_spec, known_baseline_at
from workers.pipeline.job import Job, job_of, job_secrets
from workers.runtime import WorkerRuntime
from workers.secrets import redact

log = logging.getLogger(__name__)
SOURCE_FILE = re.compile(r"([\w./-]+\.py)\b")
MAX_SUSPECTS = 20
MOST_BUILD_ERRORS = 3


@dataclass(frozen=True)
class Chain:
    """How to make the build again where it is missing: the head under it, then each diff in order."""

    base: str
    steps: tuple[tuple[str, str, Stamp], ...]
    verified_at: str = ""  # the commit the entry's own diff was verified at, whose baseline the canaries follow


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failures: list[str]
    reason: str
    suspects: list[str] = field(default_factory=list)  # repository files the failures' tracebacks name


def verify_build(rt: WorkerRuntime, entry_id: int, send_builds: SendBuilds, send_attempts: SendAttempts) -> None:
    """Claim the entry's current build, run the tests at it, record the verdict, and run a queue pass."""
    token = uuid.uuid4().hex
    claimed = _claim(rt, entry_id, token)
    if claimed is None:
        return  # a duplicate message, a build already judged, or one reset since it was sent
    job, build, chain, errors = claimed
    cancel = Cancellation()
    keeper = threading.Thread(target=_keep, args=(rt, entry_id, token, cancel), daemon=True)
    keeper.start()
    try:
        verdict: Verdict | str = _run(rt, job, entry_id, build, chain, cancel)
    except Exception as exc:  # the unit of work's boundary: Fleet's own failure, no verdict on the diffs
        log.exception("merge build %s", entry_id)
        verdict = f"{type(exc).__name__}: {exc}"
    finally:
        cancel.set()
        keeper.join(timeout=5.0)
    if isinstance(verdict, str) and errors + 1 < MOST_BUILD_ERRORS:
        why = f"the build could not be verified on {rt.worker_id} ({verdict}); it is sent again"
        with rt.db.session() as s:
            queries.release_build(s, (job.repo_id, entry_id, build), token, redact(why, job_secrets(job)))
        return
    if isinstance(verdict, str):
        verdict = Verdict(False, [], f"the build could not be verified, {MOST_BUILD_ERRORS} times: {verdict}")
    with rt.db.session() as s:
        status = MergeStatus.PASSED if verdict.passed else MergeStatus.FAILED
        reason = redact(verdict.reason, job_secrets(job))
        queries.finish_build(
            s, (job.repo_id, entry_id, build), token, status,
            failures=verdict.failures, reason=reason, suspects=verdict.suspects,
        )  # fmt: skip
    advance(rt.db, rt.settings, job.repo_id, send_builds, send_attempts)


def _claim(rt: WorkerRuntime, entry_id: int, token: str) -> tuple[Job, str, Chain, int] | None:
    """The claimed build's job, commit, how to make it again, and Fleet's own failures to verify it so far."""
    with rt.db.session() as s:
        entry = queries.get_entry(s, entry_id)
        if entry is None or entry.status != MergeStatus.BUILDING.value or not entry.build_sha:
            return None
        build = entry.build_sha
        if not queries.claim_build(s, entry, build, token, rt.settings.lease_seconds):
            return None
        below = [queries.get_entry(s, i) for i in entry.stack]
        entries = [e for e in below if e is not None] + [entry]
        job = job_of(s, queries.attempt_row(s, entry.attempt_id))
        chain = Chain(entries[0].parent_sha or "", tuple(build_inputs(s, e) for e in entries), job.base_sha)
        return replace(job, base_sha=build), build, chain, entry.build_errors


def ensure_build(rt: WorkerRuntime, job: Job, build: str, chain: Chain) -> Path:
    """The worker's mirror holding the build: the pass that made it may have run on another machine, and builds
    are deterministic, so this one makes the same commits from the head under them."""
    mirror = rt.mirror(job.repo_key, job.source, chain.base)
    if has_commit(mirror, build):
        return mirror
    tip = chain.base
    for diff, message, stamp in chain.steps:
        made = build_commit(mirror, tip, diff, message, stamp)
        if isinstance(made, Conflict):
            raise BuildMissing(f"the build could not be made again here: {', '.join(made.files)} did not apply")
        tip = made
    if tip != build:
        raise BuildMissing(f"the build made again here is {tip[:12]}, not {build[:12]}")
    return mirror


class BuildMissing(Exception):
    """This worker cannot make the build it was sent."""


def _keep(rt: WorkerRuntime, entry_id: int, token: str, done: threading.Event) -> None:
    """Renew the build's lease until done; a lost lease (a reset, or a pass that thought us dead) ends the wait."""
    while not done.wait(max(0.5, rt.settings.lease_seconds / 3)):
        try:
            with rt.db.session() as s:
                if not queries.renew_build(s, entry_id, token, rt.settings.lease_seconds):
                    done.set()  # the build's tests stop: their verdict could no longer be written
                    return
        except Exception as exc:
            log_failure(log, f"renewing the lease of merge build {entry_id}", exc)


def _run(rt: WorkerRuntime, job: Job, entry_id: int, build: str, chain: Chain, cancel: threading.Event) -> Verdict:
    mirror = ensure_build(rt, job, build, chain)
    pool = rt.pool(job.repo_key, "verify", mirror)
    report_dir = rt.settings.attempts_dir / f"merge-{entry_id}-{build[:12]}"
    try:
        with rt.ports.lease(job.ports) as ports:
            spec = job_spec(rt, job, ports.env())
            verified = known_baseline_at(rt, job.repo_id, chain.verified_at, spec)  # the entry's, for canaries
            with pool.lease(build) as checkout:
                # The build holds the queued diffs: an environment built from their code is never saved under the
                # key of the base's files, where every later verification at the base would restore it.
                run, rewritten = run_build(checkout.path, spec, report_dir, cancel, False, verified)
                known = set(job.repo_settings.known_failures)
                failures = [t for t in run.failures if t not in known]
                suspects = named_files(checkout.path, [run.results[t] for t in failures])
    finally:
        with contextlib.suppress(OSError):
            remove_tree(report_dir)
    if run.error:
        return Verdict(False, [], f"the tests could not run: {run.error}")
    if rewritten:
        return Verdict(False, [], rewritten)
    if failures:
        return Verdict(False, failures, f"{len(failures)} test(s) fail: " + ", ".join(failures[:5]), suspects)
    if problem := untrusted(run, verified):
        return Verdict(False, [], problem)
    return Verdict(True, [], f"{len(run.results)} test(s) pass")


def named_files(checkout: Path, failed: list[TestResult]) -> list[str]:
    """The repository's files that the failures' messages and tracebacks name, as paths inside the checkout."""
    root = checkout.resolve()
    found: dict[str, None] = {}
    for result in failed:
        for name in SOURCE_FILE.findall(f"{result.message}\n{result.details}"):
            path = (root / name).resolve() if not name.startswith("/") else Path(name).resolve()
            if path.is_relative_to(root) and path.is_file():
                found.setdefault(str(path.relative_to(root)), None)
    return list(found)[:MAX_SUSPECTS]
