"""The agent step: run an agent on an attempt in a pooled worktree, record its transcript and diff."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from db import queries
from db.engine import transient
from db.lifecycle import AttemptStatus
from db.models import utcnow
from system.files import write_over
from system.git import GitError, git
from system.process import ChildLimits
from system.retry import retrying
from system.sandbox import toolchain_roots
from verification.environment import CacheUse, SetupSandbox, copy_files, exclude_from_diffs, set_up_environment
from verification.runner import scrubbed_env
from workers import scheduler
from workers.agent_git import pointed_at, private_gitdir
from workers.agent_sandbox import AgentSandbox
from workers.agents import load_agent
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.outcome import crash_reason
from workers.cgroups import attempt_cgroup
from workers.group_writer import GroupWriter
from workers.journal import AGENT
from workers.pipeline.agent_plan import agent_limits, agent_options, agent_sandbox, close_gate, withheld_env
from workers.pipeline.baselines import context_pack
from workers.pipeline.job import (
    Job,
    declared_paths,
    fingerprint,
    hidden_paths,
    job_secrets,
    why_unsandboxed,
)
from workers.pipeline.metering import gate_env, open_gate, settle_usage
from workers.pipeline.outcome import Outcome, columns_of, from_kept, kept_outcome, store_kept
from workers.pipeline.setup_network import setup_egress
from workers.pipeline.unit import (
    Unit,
    claim_agents,
    fenced_off,
    held,
    infrastructure,
    perform,
    perform_held,
    record_error,
)
from workers.pipeline.verify_step import verify_here
from workers.runtime import WorkerRuntime
from workers.secrets import redact
from workers.worktree import Worktree
from workers.worktree_diff import DiffNotKept

log = logging.getLogger(__name__)
AGENT_ENDS = "fleet-agent-ends"
ENDS_AT_ONCE = 20  # a wave's ends share a transaction; the first of them waits for no more than twenty
RENEWALS_MISSED = 3  # a lease not renewed for this many heartbeats has a dead holder, for the outcome's hand-over


def run_agent_attempt(rt: WorkerRuntime, attempt_id: int) -> None:
    """Claim the attempt, run its agent in a pooled worktree, record transcript and diff, queue verification;
    then run the waiting attempt the agent's end claimed for this slot, if any, and so on. Delivered as the worker
    stops (a message taken as it started), the attempt is left waiting, for the reconciler to send again."""
    if rt.stopping.is_set():
        log.info("attempt %s stays in line: this worker is stopping", attempt_id)
        return
    try:
        rt.refills.take()  # the slot's first claim and start go in turn too (a first wave of a hundred starts)
        following = perform(rt, attempt_id, AttemptStatus.RUNNING, _execute_agent, _finish_agent)
        while following is not None:
            following = perform_held(rt, following, _execute_agent, _finish_agent)
    finally:
        rt.refills.give_back()  # this slot has nothing more to run


def _execute_agent(rt: WorkerRuntime, unit: Unit) -> Outcome:
    """The agent's outcome: the one kept from a finished run of this attempt, else a new run (its start counted by
    the claim), journaled."""
    kept = unit.job.kept_agent
    if kept is not None:  # the agent finished before its worker could tell the database: never run it again
        log.warning("attempt %s: the agent finished before; its outcome goes to verification", unit.job.attempt_id)
        return from_kept(kept)
    result, diff, prompt, metering = _run_agent(rt, unit)
    outcome = result, diff, prompt, unit.job.agent_start, metering
    if not result.cancelled:
        rt.journal.save(unit.job.attempt_id, AGENT, unit.job.fingerprint, kept_outcome(*outcome))
    return outcome


def _run_agent(rt: WorkerRuntime, unit: Unit) -> tuple[AgentResult, str, str, dict[str, Any]]:
    job, cancel = unit.job, unit.cancel
    agent = load_agent(job.agent, agent_options(rt, job), rt.settings.agent_classes)  # refused before any work
    mirror = rt.mirror(job.repo_key, job.source, job.base_sha)
    attempt_dir = rt.attempt_folders.start(job.attempt_id)
    prompt_file = attempt_dir / "agent" / "prompt.md"
    prompt_file.parent.mkdir(exist_ok=True)
    prompt, pack_env, unverifiable = context_pack(rt, job, mirror, cancel, attempt_dir)
    write_over(prompt_file, prompt.encode())  # kept from the attempt this folder was before (attempt_folders.py)
    if unverifiable is not None:  # no diff of this agent's could be verified: it is not run (nor paid for)
        stopped = cancel.is_set()  # the baseline was cut short by the ticket's cancellation
        note = "cancelled" if stopped else unverifiable
        transcript = f"[fleet] the agent was not started: {note}\n"
        error = None if stopped else unverifiable
        return AgentResult(None, transcript, 0.0, cancelled=stopped, error=error), "", prompt, {}
    limits = agent_limits(rt, job, agent)
    secrets = job_secrets(job)
    with (
        rt.pool(job.repo_key, "agent", mirror).lease(job.base_sha) as worktree,
        rt.ports.lease(job.ports) as ports,
        open_gate(rt, job, agent) as model_gate,
    ):
        setup_log = _prepare_worktree(rt, job, mirror, worktree.path, ports.env(), cancel, attempt_dir / "setup")
        setup_log += _start_from(worktree.path, job.start_diff)
        sandbox, warning = agent_sandbox(rt, job, agent, worktree, attempt_dir, model_gate.port)
        warning = "; ".join(filter(None, (warning, withheld_env(job)))) or None
        with (
            attempt_cgroup(job.attempt_id, limits.processes, limits.memory_mb) as cgroup,
            _own_git_dir(worktree, attempt_dir, sandbox),
            rt.transcripts.watch(job.attempt_id, unit.lease, secrets) as live,
        ):
            task = AgentTask(
                worktree=worktree.path,
                prompt_file=prompt_file,
                ticket_id=job.ticket_id,
                attempt=job.number,
                run=job.run_index,
                timeout=float(job.agent_options.get("timeout", rt.settings.agent_timeout_seconds)),
                cancelled=cancel,
                env=ports.env() | pack_env | sandbox.env | gate_env(model_gate),
                wrapper=sandbox.wrapper,
                cgroup_procs=cgroup.procs_files if cgroup else (),
                on_output=live.write,
                limits=ChildLimits(address_space=limits.address_space_mb * 2**20),
            )
            rt.refills.give_back()  # the previous agent's end and this one's start are done
            try:
                result = agent.run(task)
            finally:
                try:
                    if sandbox.gate is not None:
                        close_gate(sandbox.gate)
                finally:
                    model_gate.close()
            rt.refills.take()  # from here to the next agent's start, this slot goes in turn (workers/refills)
            breach = cgroup.breach() if cgroup else None
        if breach and not result.cancelled:
            result = replace(result, error=breach)
        result, metering = settle_usage(rt, job, model_gate, result)
        result, diff = (result, "") if result.cancelled else _take_diff(worktree, result, rt.settings.max_diff_bytes)
        result = _crashed(job.agent, result, diff)
    if warning:
        threading.Thread(target=_warn, args=(rt, job, warning), daemon=True).start()  # the outcome never waits on it
    notes = setup_log + (f"[fleet] {warning}\n" if warning else "")
    egress = "".join(event.line() + "\n" for event in sandbox.gate.events) if sandbox.gate else ""
    result = replace(result, transcript=redact(notes + result.transcript + egress, secrets))
    return result, diff, prompt, metering


def _start_from(path: Path, diff: str) -> str:
    """Apply the diff an attempt starts from (its pull request's) to the worktree, so the agent continues from the
    PR's branch and the attempt's diff (against the base) holds both; a line for the transcript."""
    if not diff.strip():
        return ""
    try:
        git("apply", "--whitespace=nowarn", "-", cwd=path, input=diff)
    except GitError as exc:
        return f"[fleet] the pull request's diff did not apply; starting from the base instead: {exc}\n"
    return "[fleet] starting from the pull request's branch: its diff is applied to this worktree\n"


def _own_git_dir(worktree: Worktree, attempt_dir: Path, sandbox: AgentSandbox) -> AbstractContextManager[object]:
    """Unsandboxed, `.git` names the attempt's git dir during the run (a sandbox binds its own pointer over it)."""
    if sandbox.wrapper:
        return nullcontext()
    gitdir = private_gitdir(worktree.mirror, worktree.gitdir, worktree.base_sha, attempt_dir)
    return pointed_at(worktree.path, gitdir)


def _take_diff(worktree: Worktree, result: AgentResult, limit: int) -> tuple[AgentResult, str]:
    """The worktree's diff; over the limit or holding a NUL, none, and the attempt's error says why (nothing is
    stored)."""
    try:
        return result, worktree.diff(limit)
    except DiffNotKept as exc:
        return replace(result, error="; ".join(filter(None, (result.error, str(exc))))), ""


def _crashed(agent: str, result: AgentResult, diff: str) -> AgentResult:
    """A run that exited non-zero and changed nothing ends as an error quoting its output (workers/agents/outcome)."""
    if result.error or result.cancelled or result.timed_out:
        return result
    reason = crash_reason(agent, result.exit_code, result.transcript, bool(diff.strip()))
    return replace(result, error=reason) if reason else result


def _warn(rt: WorkerRuntime, job: Job, warning: str) -> None:
    """Log the warning on the ticket, trying again a while; never part of the attempt's outcome."""
    try:
        retrying(lambda: _log_warning(rt, job, warning), transient, rt.settings.write_retry_seconds)
    except Exception as exc:
        log.warning("attempt %s: a warning was not stored (%s)", job.attempt_id, type(exc).__name__)


def _log_warning(rt: WorkerRuntime, job: Job, warning: str) -> None:
    with rt.db.session() as s:
        queries.log_event(
            s, "warning", f"attempt {job.number}: {warning}", ticket_id=job.ticket_id, attempt_id=job.attempt_id
        )


def _prepare_worktree(
    rt: WorkerRuntime,
    job: Job,
    mirror: Path,
    path: Path,
    ports: dict[str, str],
    cancel: threading.Event,
    scratch: Path,
) -> str:
    """Copy the repo's files in and set up its environment (neither is ever part of a diff); returns the log."""
    if job.copy_files:
        exclude_from_diffs(mirror, [dest for _, dest in job.copy_files])
        copy_files(job.copy_files, path)
    if not job.setup_cmd:
        return ""
    cache = job.env_cache(rt.env_cache)
    copied = tuple(source for source, _ in job.copy_files)
    sandbox = None
    if why_unsandboxed(rt, job) is None:
        readable = toolchain_roots(os.environ.get("PATH", os.defpath), [job.setup_cmd], declared_paths(rt, job))
        network, egress = job.repo_settings.setup_network, setup_egress(rt, job, "setup")
        sandbox = SetupSandbox(scratch, readable, hidden_paths(rt, job), network, egress)
    else:
        rt.attempt_folders.mark_unconfined(job.attempt_id)
    environment = set_up_environment(
        path,
        job.setup_cmd,
        where="the agent's worktree",
        timeout=rt.settings.setup_timeout_seconds,
        env=scrubbed_env(os.environ) | ports,
        cancelled=cancel,
        cache=CacheUse(cache, "agent", copied, job.env_key_files) if cache else None,
        sandbox=sandbox,
    )
    exclude_from_diffs(mirror, environment.created)  # what the setup built is the environment, not the agent's work
    return environment.log


def hand_over_kept(rt: WorkerRuntime) -> int:
    """Write the journal's finished agent outcomes into the database, for workers on other hosts to find.

    Run by the reconciler before it expires leases. Only the outcome of an attempt whose lease was not renewed
    for RENEWALS_MISSED heartbeats is handed over (its worker died, or lost the database): a holder that renews
    records its outcome itself. A dead holder's lease is stale that long before it runs out, so the outcome is
    on the row before any host's reconciler puts the attempt back in line, and no worker elsewhere runs the agent
    again. The journal's other entries, the host's other worker processes' agents, are neither read nor written
    each pass. An entry whose attempt is gone, is another database's, or has its outcome stored is dropped."""
    mine = {holding.attempt_id for holding in rt.leases.snapshot().values()}
    ids = [attempt_id for attempt_id in rt.journal.attempt_ids(AGENT) if attempt_id not in mine]
    if not ids:
        return 0
    settings = rt.settings
    with rt.db.session() as s:
        known = queries.journaled(s, ids, settings.lease_seconds, RENEWALS_MISSED * settings.heartbeat_seconds)
    handed = 0
    for attempt_id in ids:
        attempt = known.get(attempt_id)
        if attempt is not None and attempt.leased and not attempt.agent_finished:
            continue
        kept = None if attempt is None or attempt.agent_finished else rt.journal.load(attempt_id, AGENT, _of(attempt))
        if kept is None:
            rt.journal.drop(attempt_id, (AGENT,))
            continue
        with rt.db.session() as s:
            handed += store_kept(s, attempt_id, kept)
    return handed


def _of(attempt: queries.Journaled) -> str:
    """The fingerprint a journal entry of this very attempt carries."""
    return fingerprint(attempt.ticket_id, attempt.run_id, attempt.number, attempt.created_at)


def _finish_agent(rt: WorkerRuntime, unit: Unit, outcome: Outcome) -> Unit | None:
    """Record the agent's outcome and queue its verification; returns the attempt this slot runs next, if any."""
    (result, diff, prompt, run, metering), job, lease = outcome, unit.job, unit.lease
    recorded = columns_of(result, diff, prompt, metering)
    if result.cancelled:
        with rt.db.session() as s:
            queries.advance(s, job.attempt_id, lease, AttemptStatus.CANCELLED, finished_at=utcnow(), **recorded)
            sends = scheduler.plan(s, rt.settings)  # the freed agent slot
        rt.dispatcher.send(sends)
        rt.discard_attempt_dir(job.attempt_id)
        return None
    if result.error:
        by_the_agent = result.timed_out or result.exit_code is not None  # it ran, and its run ended so
        record_error(rt, job, lease, result.error, "", recorded, by_the_agent)
        return None
    following = rt.new_lease()
    ended = _agent_ends(rt).submit(AgentEnd(job.attempt_id, lease, run, recorded, following))
    here = ended.moved and rt.verifies_here  # a worker that verifies takes its own agents' diffs, with no message
    if ended.moved:
        rt.journal.drop(job.attempt_id, (AGENT,))  # the outcome is in the database now
    verify = [(job.attempt_id, AttemptStatus.VERIFY_QUEUED)] if ended.moved and not here else []
    rt.dispatcher.send(verify + ended.sends)
    if here:
        verify_here(rt, replace(job, diff=diff, kept_agent=None, agent_start=0))
    if not ended.moved:
        fenced_off(job)
    return None if ended.next_job is None else held(rt, ended.next_job, following)


@dataclass(frozen=True)
class AgentEnd:
    """An agent's outcome to record (from its start number `run`), and the lease for the slot's next attempt."""

    attempt_id: int
    lease: queries.Lease
    run: int
    recorded: dict[str, Any]
    following: queries.Lease


@dataclass(frozen=True)
class EndRecorded:
    """Whether the outcome moved the attempt to verification (else the lease was lost and the outcome stays on the
    row for its next worker), the next attempt claimed for the slot, and the attempts to send."""

    moved: bool
    next_job: Job | None
    sends: list[tuple[int, AttemptStatus]]


def _agent_ends(rt: WorkerRuntime) -> GroupWriter[AgentEnd, EndRecorded]:
    """The process's writer of agent ends: the ends waiting when it writes share one transaction."""
    return rt.group_writer(
        AGENT_ENDS, lambda: GroupWriter(functools.partial(_record_ends, rt), ENDS_AT_ONCE, infrastructure, AGENT_ENDS)
    )


def _record_ends(rt: WorkerRuntime, ends: list[AgentEnd]) -> list[EndRecorded]:
    """Record the outcomes, fill the slots they free with one scheduler pass, and claim each slot's next attempt,
    in one transaction. The attempts chosen and not claimed are marked sent and go with the first answer, to be
    sent (one claimed here is never marked: no other worker could see the mark before the claim)."""
    with rt.db.session() as s:
        moved = record_outcomes(s, ends)
        chosen = scheduler.choose(s, rt.settings)  # the agent slots are free now, whatever verification is doing
        next_jobs = _claim_next(s, rt, chosen, [end.following for end in ends])
        claimed = {job.attempt_id for job in next_jobs if job is not None}
        sends = scheduler.sent(s, [attempt_id for attempt_id in chosen if attempt_id not in claimed])
    return [
        EndRecorded(went, next_job, sends if n == 0 else [])
        for n, (went, next_job) in enumerate(zip(moved, next_jobs, strict=True))
    ]


def record_outcomes(s: queries.Session, ends: Sequence[AgentEnd]) -> list[bool]:
    """Each agent's outcome, recorded; whether each moved its attempt to verification. The attempts' rows are
    written in the order of their ids, as live transcripts are (db/queries/leases.py): two transactions that lock
    rows in one order never deadlock."""
    moved = [False] * len(ends)
    for n in sorted(range(len(ends)), key=lambda n: ends[n].attempt_id):
        moved[n] = _record_end(s, ends[n])
    return moved


def _record_end(s: queries.Session, end: AgentEnd) -> bool:
    moved = queries.advance(
        s, end.attempt_id, end.lease, AttemptStatus.VERIFY_QUEUED, dispatched_at=utcnow(), **end.recorded
    )
    if not moved:  # the lease was lost meanwhile: the outcome stays on the row for the attempt's next worker
        queries.keep_agent_outcome(s, end.attempt_id, end.run, **end.recorded)
    return moved


def _claim_next(
    s: queries.Session, rt: WorkerRuntime, chosen: list[int], leases: list[queries.Lease]
) -> list[Job | None]:
    """The attempts the scheduler chose, claimed in order for the slots these agents free (one each, with its
    lease) in the same transaction: no message and no wait for the database between one agent's end and the next
    one's start. None for every slot while the worker stops."""
    if rt.stopping.is_set():
        return [None] * len(leases)
    picks = list(zip(chosen, leases, strict=False))  # fewer waiting attempts than slots: the others take none
    jobs = claim_agents(s, rt, picks)
    return jobs + [None] * (len(leases) - len(jobs))
