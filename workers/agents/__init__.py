"""Agent adapters, picked by a short name, or a class (`pkg.mod:Class` or `pkg.mod.Class`) an admin allow-listed.

The allow-list is the `agent_classes` setting (FLEET_AGENT_CLASSES). A submitter picks among the built-in names
and the listed classes; anything else is refused at submit and again by the worker, which never imports it.
A listed class is not imported by the worker either: it runs in a process of its own (workers/agents/hosted.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from workers.agents.base import AgentError, AgentOptions, UnknownAgent, agent_env
from workers.agents.contracts import Agent

AGENTS: dict[str, str] = {
    "shell": "workers.agents.shell:ShellAgent",
    "claude-code": "workers.agents.claude_code:ClaudeCodeAgent",
    "codex": "workers.agents.codex:CodexAgent",
    "aider": "workers.agents.aider:AiderAgent",
    "gemini": "workers.agents.gemini:GeminiAgent",
    "opencode": "workers.agents.opencode:OpenCodeAgent",
    "mini-swe-agent": "workers.agents.mini_swe_agent:MiniSweAgent",
    "llm": "workers.agents.llm:LlmAgent",
}
ALLOW_LIST = "FLEET_AGENT_CLASSES"

__all__ = [
    "AGENTS",
    "AgentError",
    "AgentOptions",
    "UnknownAgent",
    "agent_env",
    "agent_problem",
    "class_path",
    "import_class",
    "load_agent",
]


def class_path(name: str) -> str | None:
    """`pkg.mod:Class` for name written as `pkg.mod:Class` or `pkg.mod.Class`; None when it is neither."""
    module, sep, attr = name.partition(":")
    if not sep:
        module, _, attr = name.rpartition(".")
    if not module or not attr.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        return None
    return f"{module}:{attr}"


def agent_problem(name: str, agent_classes: Sequence[str]) -> str | None:
    """Why the agent called name may not run (one line naming FLEET_AGENT_CLASSES), or None when it may."""
    known = ", ".join(sorted(AGENTS))
    if name in AGENTS:
        return None
    path = class_path(name)
    if path is None:
        return f"unknown agent {name!r}; known agents: {known}, or a class listed in {ALLOW_LIST}"
    listed = [p for p in map(class_path, agent_classes) if p is not None]
    if path in listed:
        return None
    return (
        f"agent {name!r} is not allowed: a class runs only when an admin lists it in {ALLOW_LIST} "
        f"(listed: {', '.join(listed) or 'none'}); known agents: {known}"
    )


def load_agent(name: str, options: AgentOptions, agent_classes: Sequence[str] = ()) -> Agent:
    """Build the agent called name: a built-in, or a class listed in agent_classes, run in its own process."""
    problem = agent_problem(name, agent_classes)
    if problem is not None:
        raise UnknownAgent(name, problem)
    if name not in AGENTS:
        from workers.agents.hosted import HostedAgent

        return HostedAgent(class_path(name) or name, options)
    return import_class(AGENTS[name])(options)  # type: ignore[no-any-return]


def import_class(path: str) -> type:
    """The class at `pkg.mod:Class`; AgentError names what is missing. Only for built-ins and allow-listed paths."""
    module_name, _, attr = (class_path(path) or path).partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise AgentError(f"cannot import {module_name}: {exc}") from exc
    except AttributeError as exc:
        raise AgentError(f"{module_name} has no {attr}") from exc
    if not isinstance(found, type):
        raise AgentError(f"{path} is not a class")
    return found
