"""The three contracts of Fleet: the agent, the workspace and the verifier."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from system.process import DEFAULT_LIMITS, ChildLimits


@dataclass(frozen=True)
class AgentTask:
    """Everything an agent gets for one attempt. The prompt is a file, never a command line."""

    worktree: Path
    prompt_file: Path
    ticket_id: int
    attempt: int
    timeout: float
    cancelled: threading.Event
    env: dict[str, str] = field(default_factory=dict)
    run: int = 0
    # Every command the agent starts runs as [*wrapper, *argv] (the sandbox) and joins these cgroups (its limits).
    wrapper: tuple[str, ...] = ()
    cgroup_procs: tuple[Path, ...] = ()
    # Called with each chunk the agent's commands print, as they print it, from a reader thread: it must be quick.
    on_output: Callable[[bytes], None] | None = None
    # The rlimits every command of the agent starts under (the address space and process count settings).
    limits: ChildLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class AgentResult:
    """What an agent left behind. The diff is taken by Fleet from the worktree afterwards."""

    exit_code: int | None
    transcript: str
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class Agent(Protocol):
    """A coding agent: edits files in task.worktree and returns when done."""

    def run(self, task: AgentTask) -> AgentResult: ...


class Workspace(Protocol):
    """A git checkout at a base commit, leased from a pool and handed back clean."""

    path: Path
    base_sha: str

    def diff(self) -> str: ...

    def release(self) -> None: ...
