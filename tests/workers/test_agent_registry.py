"""Picking an agent: a built-in by name, or a class an admin listed, hosted in its own process; its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from workers.agents import AGENTS, AgentOptions, UnknownAgent, agent_env, load_agent
from workers.agents.contracts import AgentTask
from workers.agents.hosted import HostedAgent
from workers.agents.scripted import write_sample_repo
from workers.agents.scripted_class import COST_USD, MARKER_ENV, TOKENS_IN, TOKENS_OUT
from workers.agents.shell import ShellAgent

KNOWN = "known agents: aider, claude-code, codex, gemini, llm, mini-swe-agent, opencode, shell"
LISTED = "workers.agents.scripted_class:FixAdd"


def test_short_name() -> None:
    options = AgentOptions(command=("true",))
    agent = load_agent("shell", options)
    assert isinstance(agent, ShellAgent) and agent.options is options
    assert set(AGENTS) == {"shell", "claude-code", "codex", "aider", "gemini", "opencode", "mini-swe-agent", "llm"}


@pytest.mark.parametrize("listed", ["workers.agents.shell:ShellAgent", "workers.agents.shell.ShellAgent"])
@pytest.mark.parametrize("path", ["workers.agents.shell:ShellAgent", "workers.agents.shell.ShellAgent"])
def test_a_listed_class_in_either_spelling_is_hosted_not_imported(path: str, listed: str) -> None:
    agent = load_agent(path, AgentOptions(), [listed])
    assert isinstance(agent, HostedAgent) and agent.path == "workers.agents.shell:ShellAgent"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("claude-code-typo", "unknown agent 'claude-code-typo'"),
        ("os:system", "agent 'os:system' is not allowed"),
        ("unittest.__main__:TestProgram", "agent 'unittest.__main__:TestProgram' is not allowed"),
        ("workers.agents.shell:ShellAgent", "is not allowed"),  # a built-in's class path is not its name
        ("os.system", "agent 'os.system' is not allowed"),
    ],
)
def test_unlisted_agents_are_refused_naming_the_allow_list(name: str, reason: str) -> None:
    with pytest.raises(UnknownAgent) as caught:
        load_agent(name, AgentOptions(), [LISTED])
    message = str(caught.value)
    assert reason in message and KNOWN in message and "FLEET_AGENT_CLASSES" in message
    assert "\n" not in message


def test_an_unlisted_class_is_never_imported(tmp_path: Path) -> None:
    """In a fresh interpreter, so that no other test's import can hide one: no marker, not in sys.modules."""
    marker = tmp_path / "imported-by"
    code = (
        "import sys\n"
        "from workers.agents import AgentOptions, UnknownAgent, load_agent\n"
        "try:\n"
        f"    load_agent({LISTED!r}, AgentOptions(), ['os:system'])\n"
        "except UnknownAgent as exc:\n"
        "    print('refused:', exc)\n"
        "print('imported' if 'workers.agents.scripted_class' in sys.modules else 'not imported')\n"
    )
    env = {"PATH": os.environ["PATH"], MARKER_ENV: str(marker)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused: agent 'workers.agents.scripted_class:FixAdd' is not allowed" in done.stdout
    assert done.stdout.endswith("not imported\n") and not marker.exists()


def _task(tmp_path: Path, timeout: float = 60.0) -> AgentTask:
    worktree = tmp_path / "worktree"
    write_sample_repo(worktree)
    prompt = tmp_path / "agent" / "prompt.md"
    prompt.parent.mkdir()
    prompt.write_text("Fix add.")
    return AgentTask(worktree, prompt, ticket_id=1, attempt=1, timeout=timeout, cancelled=threading.Event())


def test_a_listed_class_runs_in_its_own_process_and_keeps_its_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported-by"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    task = _task(tmp_path)
    options = AgentOptions(env_passthrough=(MARKER_ENV,), env_granted=(MARKER_ENV,))  # a ticket names it
    result = load_agent(LISTED, options, [LISTED]).run(task)
    assert result.error is None and result.exit_code == 0, result.transcript
    assert "return a + b" in (task.worktree / "calc.py").read_text()
    assert (result.tokens_in, result.tokens_out, result.cost_usd) == (TOKENS_IN, TOKENS_OUT, COST_USD)
    assert "__main__ workers.agents.hosted" in result.transcript
    [pid] = marker.read_text().split()
    assert int(pid) != os.getpid()


@pytest.mark.parametrize(
    "path, error",
    [
        ("workers.agents.scripted_class:Exits", "raised SystemExit: 3"),
        ("workers.agents.scripted_class:Interrupted", "raised KeyboardInterrupt"),
        ("nosuchmodule.sub:Agent", "cannot import nosuchmodule.sub"),
        ("workers.agents.shell:Missing", "workers.agents.shell has no Missing"),
        ("workers.agents.base:agent_env", "is not a class"),
        ("workers.agents.base:AgentOptions", "has no run(task) method"),
    ],
)
def test_whatever_a_listed_class_does_wrong_is_the_attempts_named_error(tmp_path: Path, path: str, error: str) -> None:
    result = load_agent(path, AgentOptions(), [path]).run(_task(tmp_path))
    assert result.error is not None and result.error.startswith(f"agent class {path}") and error in result.error


def test_a_listed_class_that_never_returns_is_stopped_at_its_time_limit(tmp_path: Path) -> None:
    path = "workers.agents.scripted_class:Hangs"
    result = load_agent(path, AgentOptions(grace_seconds=1), [path]).run(_task(tmp_path, timeout=1.0))
    assert result.timed_out and result.error == "agent timed out after 1s"


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
    named = ("FLEET_TEST_ALLOWED", "NOT_SET")  # shaped like Fleet's own settings: passed on as a ticket names them
    env = agent_env(task, AgentOptions(env_passthrough=named, env_granted=named, model="m-1"))
    assert "FLEET_TEST_SECRET" not in env and "NOT_SET" not in env
    assert env["FLEET_TEST_ALLOWED"] == "yes"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == str(tmp_path / "home") and env["EXTRA"] == "1"
    assert env["FLEET_PROMPT_FILE"] == str(tmp_path / "prompt.md")
    assert (env["FLEET_ATTEMPT"], env["FLEET_TICKET_ID"], env["FLEET_WORKTREE"]) == ("2", "7", str(tmp_path))
    assert env["FLEET_MODEL"] == "m-1"
