"""The shell agent with real subprocesses: environment, limits, cancellation, output bounds, no shell."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.agents import AgentOptions, load_agent
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.scripted import scripted_command
from workers.worktree import Worktree, WorktreePool

PY = sys.executable


@pytest.fixture
def worktree(pool: WorktreePool, base_sha: str) -> Iterator[Worktree]:
    with pool.lease(base_sha) as wt:
        yield wt


def _task(wt: Worktree, tmp_path: Path, prompt: str = "Fix add.", timeout: float = 30.0, **env: str) -> AgentTask:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text(prompt)
    return AgentTask(
        wt.path, prompt_file, ticket_id=3, attempt=1, timeout=timeout, cancelled=threading.Event(), env=env
    )


def _run(command: tuple[str, ...], task: AgentTask, **options: Any) -> AgentResult:
    return load_agent("shell", AgentOptions(command=command, **options)).run(task)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an unreaped zombie is dead for our purpose


def test_scripted_fix_through_the_shell_agent(worktree: Worktree, tmp_path: Path) -> None:
    result = _run(scripted_command("fix-add"), _task(worktree, tmp_path))
    assert result.exit_code == 0 and result.error is None
    assert "edited calc.py" in result.transcript
    assert "+    return a + b" in worktree.diff()


def test_environment_reaches_the_agent(worktree: Worktree, tmp_path: Path) -> None:
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = _run((PY, "-c", code), _task(worktree, tmp_path, EXTRA="from-task"), model="small")
    env = json.loads(result.transcript)
    assert env["FLEET_PROMPT_FILE"] == str(tmp_path / "prompt.md")
    assert (env["FLEET_ATTEMPT"], env["FLEET_TICKET_ID"]) == ("1", "3")
    assert env["FLEET_WORKTREE"] == str(worktree.path)
    assert (env["EXTRA"], env["FLEET_MODEL"]) == ("from-task", "small")
    assert not any(name.startswith(("PYTEST_", "GIT_")) for name in env)


def test_cwd_is_the_worktree_and_extra_args_follow(worktree: Worktree, tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(sys.argv[1:])"
    result = _run((PY, "-c", code, "a"), _task(worktree, tmp_path), extra_args=("--b", "c d"))
    assert result.transcript.splitlines() == [str(worktree.path), "['a', '--b', 'c d']"]


def test_nonzero_exit_is_recorded_not_an_error(worktree: Worktree, tmp_path: Path) -> None:
    result = _run((PY, "-c", "import sys; print('gave up'); sys.exit(3)"), _task(worktree, tmp_path))
    assert (result.exit_code, result.error, result.transcript) == (3, None, "gave up\n")


def test_missing_and_empty_commands(worktree: Worktree, tmp_path: Path) -> None:
    task = _task(worktree, tmp_path)
    assert _run((), task).error == "the shell agent needs --agent-cmd"
    assert _run(("fleet-no-such-agent-xyz",), task).error == "agent command not found: fleet-no-such-agent-xyz"
    assert _run(("./no/such/agent",), task).error == "agent command not found: ./no/such/agent"


def test_a_relative_command_is_never_taken_from_the_worktree(worktree: Worktree, tmp_path: Path) -> None:
    planted = worktree.path / "agent.sh"
    planted.write_text("#!/bin/sh\ntouch planted-ran\n")
    planted.chmod(0o755)
    result = _run(("./agent.sh",), _task(worktree, tmp_path))
    assert result.error == "agent command not found: ./agent.sh"
    assert not (worktree.path / "planted-ran").exists()


def test_timeout_kills_the_whole_process_group(worktree: Worktree, tmp_path: Path) -> None:
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    started = time.monotonic()
    result = _run((PY, "-c", code), _task(worktree, tmp_path, timeout=1.0), grace_seconds=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.error == "agent timed out after 1s"
    assert "started" in result.transcript
    child = int((worktree.path / "child.pid").read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the agent's child sleep outlived the timeout"


def test_cancel_stops_the_agent_quickly(worktree: Worktree, tmp_path: Path) -> None:
    task = _task(worktree, tmp_path, timeout=60)
    threading.Timer(0.5, task.cancelled.set).start()
    started = time.monotonic()
    result = _run(scripted_command("hang"), task, grace_seconds=0.5)
    assert time.monotonic() - started < 2.5
    assert result.cancelled and not result.timed_out and result.error == "agent cancelled"
    assert "hanging" in result.transcript


def test_five_megabytes_of_output_are_bounded(worktree: Worktree, tmp_path: Path) -> None:
    result = _run(scripted_command("noisy"), _task(worktree, tmp_path), transcript_limit=64_000)
    assert result.exit_code == 0
    assert len(result.transcript) < 64_000 + 200
    assert "bytes omitted" in result.transcript
    assert result.transcript.rstrip().endswith("'return a + b'")
    assert "return a + b" in (worktree.path / "calc.py").read_text()


HOSTILE = "Fix it $(touch pwned1) `touch pwned2`; touch pwned3\n' \" && touch pwned4 | tee pwned5\n$HOME\n"


def test_ticket_text_is_data_never_shell(worktree: Worktree, tmp_path: Path) -> None:
    task = _task(worktree, tmp_path, prompt=HOSTILE)
    echo = "import os; print(open(os.environ['FLEET_PROMPT_FILE']).read(), end='')"
    assert _run((PY, "-c", echo), task).transcript == HOSTILE
    assert _run(scripted_command("fix-add"), task).exit_code == 0
    assert _run(("cat", str(task.prompt_file)), task).transcript == HOSTILE
    for folder in (worktree.path, tmp_path, Path.cwd()):
        assert not list(folder.glob("pwned*")), f"ticket text ran as a command in {folder}"
