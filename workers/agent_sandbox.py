"""The agent's sandbox for one attempt: its private git dir (in the sandbox's memory when the agent's whole run is
one command, else in the attempt folder), its folders, and the egress relay to its model API.

The confinement itself is system/sandbox.py's, the one the code under test gets too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from system.covers import covered_whole
from system.sandbox import View, confine, seccomp_warning
from workers.agent_git import gitdir_pointer, private_gitdir, sandbox_gitdir
from workers.egress import RELAY_SCRIPT, EgressGate, relay_argv


@dataclass(frozen=True)
class AgentSandbox:
    """How to run one attempt's agent commands: the argv prefix, and the variables that move HOME and TMPDIR."""

    wrapper: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    warning: str | None = None
    gate: EgressGate | None = None  # the attempt's way to its model API, closed when the attempt ends


@dataclass(frozen=True)
class SandboxPlan:
    """The paths one attempt's sandbox is built from."""

    worktree: Path
    worktree_gitdir: Path
    mirror: Path
    base_sha: str
    attempt_dir: Path
    home: Path
    hidden: tuple[Path, ...]
    readable: tuple[Path, ...] = ()
    # The agent's own program, shown read-only even inside a hidden folder (`--agent-cmd ./fix.sh`).
    shown: tuple[Path, ...] = ()
    egress_socket: Path | None = None
    gateway_port: int = 0  # the model gateway's gate on the worker's loopback, tunnelled to the same port inside
    # The agent's git dir in the sandbox's memory, which ends with the sandbox: only for an agent whose whole run
    # is one command in it (its class says `runs_in_one_sandbox`). An agent that starts a sandbox per command
    # (the llm agent, one per turn) keeps its git dir in the attempt folder, so a stash or commit made by one
    # command is there at the next.
    git_in_memory: bool = False

    @property
    def scratch(self) -> Path:
        """The agent's writable corner of the attempt folder: its prompt, its CLI's files, its TMPDIR."""
        return self.attempt_dir / "agent"


def build_sandbox(plan: SandboxPlan) -> AgentSandbox:
    """Make the attempt's folders, and the argv prefix that confines the agent to them and its own git dir."""
    tmp = plan.scratch / "tmp"
    for folder in (tmp, plan.home / ".cache"):
        folder.mkdir(parents=True, exist_ok=True)
    shown = tuple((p.resolve(), p.resolve()) for p in plan.shown if p.is_file() and os.access(p, os.X_OK))
    view = View(
        workdir=plan.worktree,
        writable=(plan.worktree, plan.scratch, plan.home),
        readable=plan.readable,
        hidden=plan.hidden,
        overlays=shown,
        egress_socket=plan.egress_socket,
    )
    view = _with_git_in_memory(view, plan) if plan.git_in_memory else _with_git_on_disk(view, plan)
    env = {"HOME": str(plan.home), "XDG_CACHE_HOME": str(plan.home / ".cache"), "TMPDIR": str(tmp)}
    wrapper = confine(view)
    if plan.egress_socket is not None:  # the relay on the sandbox's own loopback is the agent's HTTP proxy
        forward = (plan.gateway_port,) if plan.gateway_port else ()
        wrapper += relay_argv(sys.executable, RELAY_SCRIPT, plan.egress_socket, 0, forward)
    warnings = [*filter(None, [seccomp_warning()]), *covered_whole(plan.readable)]
    return AgentSandbox(wrapper, env, "; ".join(warnings) or None)


def _with_git_in_memory(view: View, plan: SandboxPlan) -> View:
    git = sandbox_gitdir(plan.mirror, plan.worktree, plan.worktree_gitdir, plan.base_sha)
    overlays = (*git.read_only, *view.overlays)
    return replace(view, overlays=overlays, memory=git.memory, memory_dirs=git.folders, copies=git.copies)


def _with_git_on_disk(view: View, plan: SandboxPlan) -> View:
    gitdir = private_gitdir(plan.mirror, plan.worktree_gitdir, plan.base_sha, plan.attempt_dir)
    pointer = gitdir_pointer(gitdir, plan.attempt_dir / "agent-git-pointer")
    overlays = ((pointer, plan.worktree / ".git"), *view.overlays)
    return replace(view, writable=(*view.writable, gitdir), overlays=overlays)
