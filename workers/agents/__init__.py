"""Agent adapters, picked by a short name or by an import path (`pkg.mod:Class` or `pkg.mod.Class`)."""

from __future__ import annotations

import importlib

from orchestrator.contracts import Agent
from workers.agents.base import AgentError, AgentOptions, UnknownAgent, agent_env

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

__all__ = ["AGENTS", "AgentError", "AgentOptions", "UnknownAgent", "agent_env", "load_agent"]


def load_agent(name: str, options: AgentOptions) -> Agent:
    """Build the agent called name (a key of AGENTS or an import path) with options."""
    cls = _import_class(name, AGENTS.get(name, name))
    agent = cls(options)
    if not callable(getattr(agent, "run", None)):
        raise UnknownAgent(name, sorted(AGENTS), "it has no run(task) method")
    return agent  # type: ignore[no-any-return]


def _import_class(name: str, path: str) -> type:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise UnknownAgent(name, sorted(AGENTS))
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise UnknownAgent(name, sorted(AGENTS), f"cannot import {module_name}: {exc}") from exc
    except AttributeError as exc:
        raise UnknownAgent(name, sorted(AGENTS), f"{module_name} has no {attr}") from exc
    if not isinstance(found, type):
        raise UnknownAgent(name, sorted(AGENTS), f"{path} is not a class")
    return found
