"""The agent step: run an agent on an attempt in a pooled worktree, record its transcript and diff."""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path

from db import queries
from db.lifecycle import AttemptStatus
from db.models import utcnow
from system.sandbox import confine, scratch_env, setup_view, toolchain_roots
from verification.environment import CacheUse, copy_files, exclude_from_diffs, set_up_environment
from verification.runner import scrubbed_env
from workers import scheduler
from workers.agent_git import pointed_at, private_gitdir
from workers.agent_sandbox import AgentSandbox
from workers.agents import load_agent
from workers.agents.contracts import AgentResult, AgentTask
from workers.cgroups import attempt_cgroup
from workers.pipeline.agent_plan import agent_options, agent_sandbox
from workers.pipeline.baselines import context_pack
from workers.pipeline.job import Job, declared_paths, hidden_paths, job_secrets, why_unsandboxed
from workers.pipeline.live import live_transcript
from workers.pipeline.unit import Unit, perform, record_error
from workers.runtime import WorkerRuntime
from workers.secrets import redact
from workers.worktree import DiffTooLarge, Worktree


def run_agent_attempt(rt: WorkerRuntime, attempt_id: int) -> None:
    """Claim the attempt, run its agent in a pooled worktree, record transcript and diff, queue verification."""
    perform(rt, attempt_id, AttemptStatus.RUNNING, _execute_agent, _finish_agent)


def _execute_agent(rt: WorkerRuntime, unit: Unit) -> tuple[AgentResult, str, str]:
    job, cancel = unit.job, unit.cancel
    agent = load_agent(job.agent, agent_options(rt, job), rt.settings.agent_classes)  # refused before any work
    mirror = rt.mirror(job.repo_key, job.source, job.base_sha)
    attempt_dir = rt.attempt_dir(job.attempt_id)
    prompt_file = attempt_dir / "agent" / "prompt.md"
    prompt_file.parent.mkdir(exist_ok=True)
    prompt, pack_env = context_pack(rt, job, mirror, cancel, attempt_dir)
    prompt_file.write_text(prompt, encoding="utf-8")
    limits = (job.attempt_id, rt.settings.agent_max_processes, rt.settings.agent_memory_mb)
    with rt.pool(job.repo_key, "agent", mirror).lease(job.base_sha) as worktree, rt.ports.lease(job.ports) as ports:
        setup_log = _prepare_worktree(rt, job, mirror, worktree.path, ports.env(), cancel, attempt_dir / "setup")
        sandbox, warning = agent_sandbox(rt, job, agent, worktree, attempt_dir)
        with (
            attempt_cgroup(*limits) as cgroup,
            _own_git_dir(worktree, attempt_dir, sandbox),
            live_transcript(rt, unit) as live,
        ):
            task = AgentTask(
                worktree=worktree.path,
                prompt_file=prompt_file,
                ticket_id=job.ticket_id,
                attempt=job.number,
                run=job.run_index,
                timeout=float(job.agent_options.get("timeout", rt.settings.agent_timeout_seconds)),
                cancelled=cancel,
                env=ports.env() | pack_env | sandbox.env,
                wrapper=sandbox.wrapper,
                cgroup_procs=cgroup.procs_files if cgroup else (),
                on_output=live.write,
            )
            try:
                result = agent.run(task)
            finally:
                if sandbox.gate is not None:
                    sandbox.gate.close()
            breach = cgroup.breach() if cgroup else None
        if breach and not result.cancelled:
            result = replace(result, error=breach)
        result, diff = (result, "") if result.cancelled else _take_diff(worktree, result, rt.settings.max_diff_bytes)
    if warning:
        _warn(rt, job, warning)
    notes = setup_log + (f"[fleet] {warning}\n" if warning else "")
    egress = "".join(event.line() + "\n" for event in sandbox.gate.events) if sandbox.gate else ""
    result = replace(result, transcript=redact(notes + result.transcript + egress, job_secrets(job)))
    return result, diff, prompt


def _own_git_dir(worktree: Worktree, attempt_dir: Path, sandbox: AgentSandbox) -> AbstractContextManager[object]:
    """Unsandboxed, `.git` names the attempt's git dir during the run (a sandbox binds its own pointer over it)."""
    if sandbox.wrapper:
        return nullcontext()
    gitdir = private_gitdir(worktree.mirror, worktree.gitdir, worktree.base_sha, attempt_dir)
    return pointed_at(worktree.path, gitdir)


def _take_diff(worktree: Worktree, result: AgentResult, limit: int) -> tuple[AgentResult, str]:
    """The worktree's diff; over the limit, none, and the attempt's error names the size (nothing is stored)."""
    try:
        return result, worktree.diff(limit)
    except DiffTooLarge as exc:
        return replace(result, error="; ".join(filter(None, (result.error, str(exc))))), ""


def _warn(rt: WorkerRuntime, job: Job, warning: str) -> None:
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
    env, wrapper = scrubbed_env(os.environ) | ports, tuple[str, ...]()
    if why_unsandboxed(rt, job) is None:
        env |= scratch_env(scratch)
        readable = toolchain_roots(os.environ.get("PATH", os.defpath), [job.setup_cmd], declared_paths(rt, job))
        wrapper = confine(setup_view(path, scratch, readable, hidden_paths(rt, job)))
    environment = set_up_environment(
        path,
        job.setup_cmd,
        where="the agent's worktree",
        timeout=rt.settings.setup_timeout_seconds,
        env=env,
        cancelled=cancel,
        cache=CacheUse(cache, "agent", copied, job.env_key_files) if cache else None,
        wrapper=wrapper,
    )
    exclude_from_diffs(mirror, environment.created)  # what the setup built is the environment, not the agent's work
    return environment.log


def _diff_stat(diff: str) -> str:
    files = added = removed = 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            files += 1
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"{files} file{'s' if files != 1 else ''}, +{added} -{removed}"


def _finish_agent(rt: WorkerRuntime, unit: Unit, outcome: tuple[AgentResult, str, str]) -> None:
    (result, diff, prompt), job, lease = outcome, unit.job, unit.lease
    recorded = dict(
        prompt=prompt,  # the context pack the agent read, in place of the ticket's text it was built from
        transcript=result.transcript,
        diff=diff,
        diff_stat=_diff_stat(diff),
        exit_code=result.exit_code,
        error=result.error,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost_usd=result.cost_usd,
        agent_finished_at=utcnow(),
    )
    if result.error and not result.cancelled:
        record_error(rt, job, lease, result.error, "", recorded)
        return
    to, stamp = (
        (AttemptStatus.CANCELLED, "finished_at") if result.cancelled else (AttemptStatus.VERIFY_QUEUED, "dispatched_at")
    )
    with rt.db.session() as s:
        moved = queries.advance(s, job.attempt_id, lease, to, **{stamp: utcnow()}, **recorded)
        sends = scheduler.plan(s, rt.settings)  # the agent slot is free now, whatever verification is doing
    rt.dispatcher.send(([(job.attempt_id, to)] if moved and to == AttemptStatus.VERIFY_QUEUED else []) + sends)
    if result.cancelled:
        rt.discard_attempt_dir(job.attempt_id)
