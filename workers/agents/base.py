"""What every agent adapter shares: its options, its errors and the environment it runs with."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from system.credentials import CREDENTIAL_VARIABLES, passable
from system.process import ProcessResult, run_process
from workers.agents.contracts import AgentTask

# Only these reach the agent from the worker's environment, unless allow-listed in env_passthrough.
BASE_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")


@dataclass(frozen=True)
class AgentOptions:
    """How to run an agent: its command line, model, extra arguments, allowed environment and limits."""

    command: tuple[str, ...] = ()
    model: str | None = None
    extra_args: tuple[str, ...] = ()
    env_passthrough: tuple[str, ...] = ()
    env_granted: tuple[str, ...] = ()  # of env_passthrough's names shaped like a secret's, those passed on by name
    grace_seconds: float = 5.0
    transcript_limit: int = 256_000


class AgentError(Exception):
    """An agent adapter could not be found or set up."""


class UnknownAgent(AgentError):
    """Neither a built-in agent nor a class an admin listed in FLEET_AGENT_CLASSES: it is never imported."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(reason)


def agent_env(task: AgentTask, options: AgentOptions) -> dict[str, str]:
    """The agent's whole environment: a minimal base, allow-listed variables, task.env and the FLEET_* facts."""
    env = {name: os.environ[name] for name in BASE_ENV_NAMES if name in os.environ}
    env.setdefault("PATH", os.defpath)
    passing = passable(options.env_passthrough, options.env_granted)
    passed = [n for n in passing if n in os.environ and n not in CREDENTIAL_VARIABLES]
    env.update({name: os.environ[name] for name in passed})
    env.update(task.env)
    if options.model:
        env["FLEET_MODEL"] = options.model
    env.update(
        FLEET_PROMPT_FILE=str(task.prompt_file),
        FLEET_ATTEMPT=str(task.attempt),
        FLEET_RUN=str(task.run),
        FLEET_TICKET_ID=str(task.ticket_id),
        FLEET_WORKTREE=str(task.worktree),
    )
    return env


def run_agent_command(
    task: AgentTask,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    limit_bytes: int,
    grace_seconds: float,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run one of the agent's commands in the worktree, inside the attempt's sandbox and cgroups."""
    return run_process(
        [*task.wrapper, *argv],
        cwd=task.worktree,
        env=env,
        timeout=timeout,
        cancelled=task.cancelled,
        limit_bytes=limit_bytes,
        grace_seconds=grace_seconds,
        stdin=stdin,
        join_cgroups=task.cgroup_procs,
        on_output=task.on_output,
        limits=task.limits,
    )
