"""The agent's options and sandbox: what it may read, and where it may connect."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from system.credentials import withheld, withheld_line
from system.files import remove_tree
from system.sandbox import toolchain_roots, wants_network
from workers.agent_sandbox import AgentSandbox, SandboxPlan, build_sandbox
from workers.agents.base import AgentOptions
from workers.agents.contracts import Agent
from workers.egress import EgressGate
from workers.pipeline.job import Job, declared_paths, hidden_paths, why_unsandboxed
from workers.runtime import WorkerRuntime
from workers.worktree import Worktree


def agent_sandbox(
    rt: WorkerRuntime, job: Job, agent: Agent, worktree: Worktree, attempt_dir: Path, gateway_port: int = 0
) -> tuple[AgentSandbox, str | None]:
    """The attempt's sandbox, or none and the warning that says why; a sandbox with the network reaches the
    model gateway's gate at gateway_port."""
    unsandboxed = why_unsandboxed(rt, job)
    if unsandboxed is not None:
        rt.attempt_folders.mark_unconfined(job.attempt_id)
        return AgentSandbox(), unsandboxed
    command = job.agent_options.get("command", ())
    needs_network = bool(getattr(agent, "needs_network", False))
    network = wants_network(rt.settings.agent_network, job.repo_settings.agent_network or None, needs_network)
    allow = _egress_allow(rt, job, agent) + ([f"127.0.0.1:{gateway_port}"] if gateway_port else [])
    gate = rt.egress.open(rt.egress_socket(job.attempt_id), allow) if network else None
    plan = SandboxPlan(
        worktree=worktree.path,
        worktree_gitdir=worktree.gitdir,
        mirror=worktree.mirror,
        base_sha=job.base_sha,
        attempt_dir=attempt_dir,
        home=attempt_dir / "home",
        hidden=hidden_paths(rt, job),
        readable=toolchain_roots(os.environ.get("PATH", os.defpath), command[:1], declared_paths(rt, job)),
        shown=tuple(Path(c) for c in command[:1] if Path(c).is_absolute()),
        egress_socket=gate.socket_path if gate else None,
        gateway_port=gateway_port,
        git_in_memory=bool(getattr(agent, "runs_in_one_sandbox", False)),
    )
    try:
        sandbox = replace(build_sandbox(plan), gate=gate)
        return sandbox, sandbox.warning  # a warning when libseccomp is missing
    except BaseException:
        if gate is not None:
            close_gate(gate)
        raise


def close_gate(gate: EgressGate) -> None:
    """Close the agent's egress gate and remove its folder: bound into the sandbox writable, whatever the agent left
    there (on the host's /tmp) would stay until the worker stops."""
    try:
        gate.close()
    finally:
        remove_tree(gate.socket_path.parent)


def _egress_allow(rt: WorkerRuntime, job: Job, agent: Agent) -> list[str]:
    """Where a sandboxed agent may connect: its CLI's model API, the hosts of the base URLs it is given, and
    what the operator (FLEET_AGENT_HOSTS) and the repository (agent_hosts) add. Nothing else: not Redis, not
    PostgreSQL, not the web app, not the LAN."""
    hosts = [*getattr(agent, "model_hosts", ()), *rt.settings.agent_hosts, *job.repo_settings.agent_hosts]
    hosts += [url_authority(os.environ.get(name, "")) for name in agent_options(rt, job).env_passthrough]
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


@dataclass(frozen=True)
class AgentLimits:
    """An attempt's resource limits: its cgroup's memory and processes, each process's address space (0: none)."""

    memory_mb: int
    processes: int
    address_space_mb: int


def agent_limits(rt: WorkerRuntime, job: Job, agent: Agent) -> AgentLimits:
    """The repository's limits where it sets them, else the agent's own default (address space), else the worker's;
    one the repository's `.fleet.toml` set only where it is lower than that (whoever commits to it wrote it)."""
    repo, worker = job.repo_settings, rt.settings
    own = getattr(agent, "address_space_mb", None)

    def limit(name: str, otherwise: int) -> int:
        asked: int = getattr(repo, name)
        if not asked:
            return otherwise
        return min(asked, otherwise) if name in job.limits_from_file and otherwise else asked

    return AgentLimits(
        memory_mb=limit("agent_memory_mb", worker.agent_memory_mb),
        processes=limit("agent_max_processes", worker.agent_max_processes),
        address_space_mb=limit(
            "agent_address_space_mb", own if isinstance(own, int) else worker.agent_address_space_mb
        ),
    )


def withheld_env(job: Job) -> str | None:
    """What the agent's environment leaves out of the repository's `agent_env`, and why; None when nothing."""
    dropped = withheld(
        job.repo_settings.agent_env, (*job.granted.get("agent_env", ()), *job.agent_options.get("env", ()))
    )
    return withheld_line("agent_env", dropped) if dropped else None


def agent_options(rt: WorkerRuntime, job: Job) -> AgentOptions:
    """The ticket's agent options over the repository's (`agent_model`, `agent_args`, `agent_env`)."""
    ticket, repo = job.agent_options, job.repo_settings
    return AgentOptions(
        command=tuple(ticket.get("command", ())),
        model=ticket.get("model") or repo.agent_model or None,
        extra_args=(*repo.agent_args, *ticket.get("extra_args", ())),
        env_passthrough=(*repo.agent_env, *ticket.get("env", ())),
        env_granted=(*job.granted.get("agent_env", ()), *ticket.get("env", ())),  # a ticket's: named by its submitter
        grace_seconds=rt.settings.kill_grace_seconds,
        transcript_limit=rt.settings.transcript_limit_bytes,
    )
