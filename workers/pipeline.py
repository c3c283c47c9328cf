"""The two units of work: run an agent on an attempt, and verify the attempt's diff. Each is idempotent."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import traceback
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from db import queries
from db.models import Attempt, utcnow
from db.status import AttemptStatus, Verdict
from orchestrator import policy, scheduler
from orchestrator.contracts import Agent, AgentResult, AgentTask
from orchestrator.specs import RepoSettings, copy_pair
from verification.runner import TestRun, scrubbed_env
from verification.verify import VerificationResult, VerifySpec, errored, run_baseline, verify_diff
from workers.agent_git import pointed_at, private_gitdir
from workers.agents import load_agent
from workers.agents.base import AgentOptions
from workers.cgroups import attempt_cgroup
from workers.envcache import DEFAULT_KEY_FILES, EnvCache
from workers.environment import CacheUse, copy_files, exclude_from_diffs, secrets_in, set_up_environment
from workers.runtime import WorkerRuntime
from workers.sandbox import (
    TURNED_OFF,
    AgentSandbox,
    SandboxPlan,
    build_sandbox,
    bwrap_missing,
    confine,
    credential_stores,
    scratch_env,
    setup_view,
    toolchain_roots,
    wants_network,
)
from workers.secrets import redact, secret_values
from workers.worktree import DiffTooLarge, Worktree

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A snapshot of the rows one unit of work needs, so no session stays open while it runs."""

    attempt_id: int
    number: int
    run_index: int
    ticket_id: int
    repo_id: int
    source: str
    base_sha: str
    agent: str
    agent_options: dict[str, Any]
    prompt: str
    diff: str
    test_cmd: str
    setup_cmd: str | None
    repo_settings: RepoSettings
    targets: tuple[str, ...] = field(default=())
    over_budget: str | None = None
    area: tuple[str, ...] = field(default=())

    @property
    def repo_key(self) -> str:
        return f"repo-{self.repo_id}"

    @property
    def copy_files(self) -> tuple[tuple[str, str], ...]:
        return tuple(copy_pair(item) for item in self.repo_settings.copy_files)

    @property
    def ports(self) -> int:
        """Ports each attempt of this repo needs (0: one block, FLEET_PORT_BLOCK_SIZE)."""
        return self.repo_settings.ports

    @property
    def env_key_files(self) -> tuple[str, ...]:
        return tuple(self.repo_settings.env_key_files or DEFAULT_KEY_FILES)

    def env_cache(self, cache: EnvCache) -> EnvCache | None:
        """The worker's environment cache, unless it or the repository turned it off."""
        return cache if cache.enabled and self.repo_settings.env_cache else None


def _snapshot(attempt: Attempt) -> Job:
    ticket = attempt.run.ticket
    repo = ticket.repo
    return Job(
        attempt_id=attempt.id,
        number=attempt.number,
        run_index=attempt.run.index,
        ticket_id=ticket.id,
        repo_id=repo.id,
        source=repo.source,
        base_sha=ticket.base_sha,
        agent=attempt.run.agent,
        agent_options=dict(ticket.agent_options),
        prompt=attempt.prompt,
        diff=attempt.diff,
        test_cmd=repo.test_cmd,
        setup_cmd=repo.setup_cmd,
        repo_settings=RepoSettings.from_stored(repo.settings),
        targets=tuple(ticket.targets),
        area=tuple(ticket.area),
    )


def _claim(
    rt: WorkerRuntime, attempt_id: int, waiting: AttemptStatus, leased: AttemptStatus
) -> tuple[Job, queries.Lease] | None:
    lease = rt.new_lease()
    with rt.db.session() as s:
        if not queries.claim(s, attempt_id, waiting, leased, lease):
            return None  # a duplicate delivery, or someone else has it: do nothing
        attempt = queries.get_attempt(s, attempt_id)
        policy.on_attempt_started(s, attempt.run.ticket)
        over = policy.over_budget(s, attempt.run.ticket) if leased == AttemptStatus.RUNNING else None
        return replace(_snapshot(attempt), over_budget=over), lease


# --- agent phase -----------------------------------------------------------------------------------


def run_agent_attempt(rt: WorkerRuntime, attempt_id: int) -> None:
    """Claim the attempt, run its agent in a pooled worktree, record transcript and diff, queue verification."""
    claimed = _claim(rt, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    if claimed is None:
        return
    job, lease = claimed
    if job.over_budget:
        _record_error(rt, job, lease, f"no attempt started: {job.over_budget}", "")
        return
    cancel = rt.leases.hold(lease.token, attempt_id)
    try:
        result, diff = _execute_agent(rt, job, cancel)
    except BaseException as exc:
        if _stops_worker(exc):
            raise
        _record_error(rt, job, lease, _named(exc), traceback.format_exc())
        return
    finally:
        rt.leases.drop(lease.token)
    _finish_agent(rt, job, lease, result, diff)


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


def _execute_agent(rt: WorkerRuntime, job: Job, cancel: threading.Event) -> tuple[AgentResult, str]:
    agent = load_agent(job.agent, _agent_options(rt, job), rt.settings.agent_classes)  # refused before any work
    mirror = rt.mirror(job.repo_key, job.source, job.base_sha)
    attempt_dir = rt.attempt_dir(job.attempt_id)
    prompt_file = attempt_dir / "agent" / "prompt.md"
    prompt_file.parent.mkdir(exist_ok=True)
    prompt_file.write_text(job.prompt, encoding="utf-8")
    limits = (job.attempt_id, rt.settings.agent_max_processes, rt.settings.agent_memory_mb)
    with rt.pool(job.repo_key, "agent", mirror).lease(job.base_sha) as worktree, rt.ports.lease(job.ports) as ports:
        setup_log = _prepare_worktree(rt, job, mirror, worktree.path, ports.env(), cancel, attempt_dir / "setup")
        sandbox, warning = _agent_sandbox(rt, job, agent, worktree, attempt_dir)
        with attempt_cgroup(*limits) as cgroup, _own_git_dir(worktree, attempt_dir, sandbox):
            task = AgentTask(
                worktree=worktree.path,
                prompt_file=prompt_file,
                ticket_id=job.ticket_id,
                attempt=job.number,
                run=job.run_index,
                timeout=float(job.agent_options.get("timeout", rt.settings.agent_timeout_seconds)),
                cancelled=cancel,
                env=ports.env() | sandbox.env,
                wrapper=sandbox.wrapper,
                cgroup_procs=cgroup.procs_files if cgroup else (),
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
    result = replace(result, transcript=redact(notes + result.transcript + egress, _secrets(job)))
    return result, diff


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


def _agent_sandbox(
    rt: WorkerRuntime, job: Job, agent: Agent, worktree: Worktree, attempt_dir: Path
) -> tuple[AgentSandbox, str | None]:
    """The attempt's sandbox, or none and the warning that says why."""
    unsandboxed = _why_unsandboxed(rt, job)
    if unsandboxed is not None:
        return AgentSandbox(), unsandboxed
    command = job.agent_options.get("command", ())
    needs_network = bool(getattr(agent, "needs_network", False))
    network = wants_network(rt.settings.agent_network, job.repo_settings.agent_network or None, needs_network)
    gate = rt.egress.open(rt.egress_socket(job.attempt_id), _egress_allow(rt, job, agent)) if network else None
    plan = SandboxPlan(
        worktree=worktree.path,
        worktree_gitdir=worktree.gitdir,
        mirror=worktree.mirror,
        base_sha=job.base_sha,
        attempt_dir=attempt_dir,
        home=attempt_dir / "home",
        hidden=_hidden(rt, job),
        readable=toolchain_roots(os.environ.get("PATH", os.defpath), command[:1], _declared_paths(rt, job)),
        shown=tuple(Path(c) for c in command[:1] if Path(c).is_absolute()),
        egress_socket=gate.socket_path if gate else None,
    )
    try:
        sandbox = replace(build_sandbox(plan), gate=gate)
        return sandbox, sandbox.warning  # a warning when libseccomp is missing
    except BaseException:
        if gate is not None:
            gate.close()
        raise


def _egress_allow(rt: WorkerRuntime, job: Job, agent: Agent) -> list[str]:
    """Where a sandboxed agent may connect: its CLI's model API, the hosts of the base URLs it is given, and
    what the operator (FLEET_AGENT_HOSTS) and the repository (agent_hosts) add. Nothing else: not Redis, not
    PostgreSQL, not the web app, not the LAN."""
    hosts = [*getattr(agent, "model_hosts", ()), *rt.settings.agent_hosts, *job.repo_settings.agent_hosts]
    hosts += [url_authority(os.environ.get(name, "")) for name in _agent_options(rt, job).env_passthrough]
    return [host for host in dict.fromkeys(hosts) if host]


def url_authority(value: str) -> str:
    """`host:port` of an http(s) URL (`https://api.example.com/v1` gives `api.example.com:443`), else ''."""
    try:
        parts = urlsplit(value)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _why_unsandboxed(rt: WorkerRuntime, job: Job) -> str | None:
    """Why this repository's agent and setup commands run without a sandbox, or None when they have one."""
    if not rt.settings.agent_sandbox:
        return TURNED_OFF.format("FLEET_AGENT_SANDBOX")
    if not job.repo_settings.agent_sandbox:
        return TURNED_OFF.format("the repository's agent_sandbox setting")
    return bwrap_missing()


def _hidden(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """Covered in every sandbox even where a shown folder holds them: Fleet's state, the repository, credentials."""
    return (rt.settings.home, Path(job.source), *credential_stores(Path.home()))


def _declared_paths(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """What the operator and the repository declare readable in every sandbox, besides the toolchains."""
    return (*rt.settings.sandbox_read_paths, *map(Path, job.repo_settings.read_paths))


def _warn(rt: WorkerRuntime, job: Job, warning: str) -> None:
    with rt.db.session() as s:
        queries.log_event(
            s, "warning", f"attempt {job.number}: {warning}", ticket_id=job.ticket_id, attempt_id=job.attempt_id
        )


def _secrets(job: Job) -> list[str]:
    """Values never stored or shown: the copied files' contents and the worker's secret-named variables."""
    return secrets_in([src for src, _ in job.copy_files]) + secret_values()


def _agent_options(rt: WorkerRuntime, job: Job) -> AgentOptions:
    """The ticket's agent options over the repository's (`agent_model`, `agent_args`, `agent_env`)."""
    ticket, repo = job.agent_options, job.repo_settings
    return AgentOptions(
        command=tuple(ticket.get("command", ())),
        model=ticket.get("model") or repo.agent_model or None,
        extra_args=(*repo.agent_args, *ticket.get("extra_args", ())),
        env_passthrough=(*repo.agent_env, *ticket.get("env", ())),
        grace_seconds=rt.settings.kill_grace_seconds,
        transcript_limit=rt.settings.transcript_limit_bytes,
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
    if _why_unsandboxed(rt, job) is None:
        env |= scratch_env(scratch)
        readable = toolchain_roots(os.environ.get("PATH", os.defpath), [job.setup_cmd], _declared_paths(rt, job))
        wrapper = confine(setup_view(path, scratch, readable, _hidden(rt, job)))
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


def _finish_agent(rt: WorkerRuntime, job: Job, lease: queries.Lease, result: AgentResult, diff: str) -> None:
    recorded = dict(
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
    if result.cancelled:
        with rt.db.session() as s:
            queries.advance(s, job.attempt_id, lease, AttemptStatus.CANCELLED, finished_at=utcnow(), **recorded)
        rt.discard_attempt_dir(job.attempt_id)
        return
    if result.error:
        _record_error(rt, job, lease, result.error, "", recorded)
        return
    with rt.db.session() as s:
        moved = queries.advance(
            s, job.attempt_id, lease, AttemptStatus.VERIFY_QUEUED, dispatched_at=utcnow(), **recorded
        )
    if moved:
        rt.dispatcher.send([(job.attempt_id, AttemptStatus.VERIFY_QUEUED)])


# --- verification phase ----------------------------------------------------------------------------


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
    claimed = _claim(rt, attempt_id, AttemptStatus.VERIFY_QUEUED, AttemptStatus.VERIFYING)
    if claimed is None:
        return
    job, lease = claimed
    cancel = rt.leases.hold(lease.token, attempt_id)
    try:
        result, baseline_id = _execute_verification(rt, job, cancel)
    except BaseException as exc:
        if _stops_worker(exc):
            raise
        _record_error(rt, job, lease, _named(exc), traceback.format_exc())
        return
    finally:
        rt.leases.drop(lease.token)
    _record_verdict(rt, job, lease, result, baseline_id, cancelled=cancel.is_set())


def _execute_verification(
    rt: WorkerRuntime, job: Job, cancel: threading.Event
) -> tuple[VerificationResult, int | None]:
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
            readable=_declared_paths(rt, job),
            hidden=_hidden(rt, job),
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


def _record_verdict(
    rt: WorkerRuntime,
    job: Job,
    lease: queries.Lease,
    result: VerificationResult,
    baseline_id: int | None,
    cancelled: bool,
) -> None:
    secrets = _secrets(job)
    result = replace(
        result,
        output=redact(result.output, secrets),
        feedback=redact(result.feedback, secrets),
        reasons=[redact(r, secrets) for r in result.reasons],
    )
    final = AttemptStatus.CANCELLED if cancelled else AttemptStatus.FINISHED
    with rt.db.session() as s:
        if not queries.advance(s, job.attempt_id, lease, final, finished_at=utcnow()):
            return  # the lease was lost: another worker owns this attempt now
        queries.add_verification(
            s,
            job.attempt_id,
            verdict=result.verdict.value,
            reasons=result.reasons,
            fail_to_pass=result.fail_to_pass,
            pass_to_pass=result.pass_to_pass,
            broken=result.broken,
            flaky=result.flaky,
            flags=result.flags,
            reverted=result.reverted,
            warnings=result.warnings,
            feedback=result.feedback,
            output=result.output,
            duration=result.duration,
            baseline_id=baseline_id,
        )
        queries.log_event(
            s,
            "verified",
            f"attempt {job.number}: {result.verdict.value}",
            ticket_id=job.ticket_id,
            attempt_id=job.attempt_id,
        )
        _after(s, job, result.verdict, result.feedback, "; ".join(result.reasons))
        sends = scheduler.plan(s, rt.settings)  # the freed slot, in the same transaction
    rt.dispatcher.send(sends)
    rt.discard_attempt_dir(job.attempt_id)


def _after(s: queries.Session, job: Job, verdict: Verdict, feedback: str, reason: str) -> None:
    attempt = queries.get_attempt(s, job.attempt_id)
    policy.after_verdict(s, attempt, policy.Outcome(verdict=verdict, feedback=feedback, reason=reason))


def _record_error(
    rt: WorkerRuntime, job: Job, lease: queries.Lease, reason: str, trace: str, recorded: dict[str, Any] | None = None
) -> None:
    """An environment failure: an `error` verdict that names the cause, and the ticket moves on."""
    secrets = _secrets(job)
    reason, trace = redact(reason, secrets), redact(trace, secrets)
    log.warning("attempt %s: %s", job.attempt_id, reason)
    fields = dict(recorded or {}, error=reason, finished_at=utcnow())
    with rt.db.session() as s:
        if not queries.advance(s, job.attempt_id, lease, AttemptStatus.FINISHED, **fields):
            return
        queries.add_verification(s, job.attempt_id, verdict=Verdict.ERROR.value, reasons=[reason], output=trace)
        queries.log_event(
            s, "error", f"attempt {job.number}: {reason}", ticket_id=job.ticket_id, attempt_id=job.attempt_id
        )
        _after(s, job, Verdict.ERROR, "", reason)
        sends = scheduler.plan(s, rt.settings)
    rt.dispatcher.send(sends)
    rt.discard_attempt_dir(job.attempt_id)
