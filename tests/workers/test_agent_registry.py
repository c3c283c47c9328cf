"""Picking an agent by short name or import path, and the environment agents get."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.contracts import AgentTask
from workers.agents import AGENTS, AgentOptions, UnknownAgent, agent_env, load_agent
from workers.agents.shell import ShellAgent


class NotAnAgent:
    """Has no run method."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options


def test_short_name() -> None:
    options = AgentOptions(command=("true",))
    agent = load_agent("shell", options)
    assert isinstance(agent, ShellAgent) and agent.options is options
    assert set(AGENTS) == {"shell", "claude-code", "codex", "aider", "gemini", "opencode", "mini-swe-agent", "llm"}


@pytest.mark.parametrize("path", ["workers.agents.shell:ShellAgent", "workers.agents.shell.ShellAgent"])
def test_dotted_paths(path: str) -> None:
    assert isinstance(load_agent(path, AgentOptions()), ShellAgent)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("claude-code-typo", ""),
        ("nosuchmodule.sub:Agent", "cannot import nosuchmodule.sub"),
        ("workers.agents.shell:Missing", "has no Missing"),
        ("workers.agents.base:agent_env", "is not a class"),
        (f"{__name__}:NotAnAgent", "no run(task) method"),
    ],
)
def test_unknown_agents_list_the_known_names(name: str, reason: str) -> None:
    with pytest.raises(UnknownAgent) as caught:
        load_agent(name, AgentOptions())
    message = str(caught.value)
    assert (
        name in message
        and "known agents: aider, claude-code, codex, gemini, llm, mini-swe-agent, opencode, shell" in message
        and reason in message
    )


def test_environment_is_minimal_plus_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_TEST_SECRET", "hunter2")
    monkeypatch.setenv("FLEET_TEST_ALLOWED", "yes")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    task = AgentTask(
        worktree=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        ticket_id=7,
        attempt=2,
        timeout=5,
        cancelled=threading.Event(),
        env={"HOME": str(tmp_path / "home"), "EXTRA": "1"},
    )
    env = agent_env(task, AgentOptions(env_passthrough=("FLEET_TEST_ALLOWED", "NOT_SET"), model="m-1"))
    assert "FLEET_TEST_SECRET" not in env and "NOT_SET" not in env
    assert env["FLEET_TEST_ALLOWED"] == "yes"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == str(tmp_path / "home") and env["EXTRA"] == "1"
    assert env["FLEET_PROMPT_FILE"] == str(tmp_path / "prompt.md")
    assert (env["FLEET_ATTEMPT"], env["FLEET_TICKET_ID"], env["FLEET_WORKTREE"]) == ("2", "7", str(tmp_path))
    assert env["FLEET_MODEL"] == "m-1"
