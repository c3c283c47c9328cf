"""Each agent CLI adapter against a fake of its CLI (tests/agents/fakes/) that prints the documented output.

The fakes are quick and run everywhere; the real programs, at the versions the adapters were verified with, are
driven through Fleet in tests/realcli (marker realcli).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workers.agents import AGENTS, AgentOptions, UnknownAgent, load_agent
from workers.agents.cli import json_objects
from workers.agents.contracts import AgentResult, AgentTask

FAKES = Path(__file__).parent / "fakes"
PROMPT = "Fix add() in calc.py.\n\nIt subtracts; tests/test_calc.py::test_add fails.\n"


@dataclass(frozen=True)
class Case:
    cli: str
    tokens: tuple[int, int]
    cost: float
    error: str | None  # what the adapter reports when the CLI declares a failure (None: the CLI cannot say)
    prompt_via: str  # "stdin", "file" or "argument"


CASES = {
    "claude-code": Case("claude", (12 + 4321 + 15000, 456), 0.0347, "claude reported an error: error_max_", "stdin"),
    "codex": Case("codex", (24763, 122), 0.0, "codex reported an error: stream disconnected", "stdin"),
    "aider": Case(
        "aider", (2500 + 3100, 310 + 95), 0.02, "aider reported an error: litellm.AuthenticationError", "file"
    ),
    "gemini": Case("gemini", (24939 + 8965, 20 + 154 + 10 + 30), 0.0, "gemini reported an error: Please set", "stdin"),
    "opencode": Case("opencode", (21200, 80 + 40 + 10), 0.0163, "opencode reported an error: No API", "stdin"),
    "mini-swe-agent": Case("mini", (1200 + 1500, 90 + 60), 0.0421, None, "argument"),
}


def expected_argv(name: str, task: AgentTask) -> list[str]:
    """The documented non-interactive invocation, with --model m1 and the extra argument --verbose."""
    scratch = task.prompt_file.parent
    tail = ["--model", "m1", "--verbose"]
    return {
        "claude-code": ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", *tail],
        "codex": ["exec", "--json", "--sandbox", "workspace-write", "--skip-git-repo-check", *tail, "-"],
        "aider": [
            "--message-file", str(task.prompt_file), "--yes-always", "--no-auto-commits", "--no-gitignore",
            "--no-pretty", "--no-check-update", "--no-stream", "--no-analytics", "--no-show-model-warnings",
            "--chat-history-file", str(scratch / "aider.chat.history.md"),
            "--input-history-file", str(scratch / "aider.input.history"), *tail,
        ],
        "gemini": ["--output-format", "stream-json", "--approval-mode", "auto_edit", "--skip-trust", *tail],
        "opencode": ["run", "--format", "json", *tail],
        "mini-swe-agent": ["-y", "--exit-immediately", "-o", str(scratch / "mini.traj.json"), *tail, "-t", PROMPT],
    }[name]  # fmt: skip


@pytest.fixture
def fakes_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for fake in FAKES.iterdir():
        if not fake.name.startswith("_"):
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ.get('PATH', os.defpath)}")


def make_task(tmp_path: Path, mode: str = "ok") -> AgentTask:
    worktree, attempt_dir = tmp_path / "worktree", tmp_path / "attempt"
    worktree.mkdir()
    attempt_dir.mkdir()
    prompt = attempt_dir / "prompt.md"
    prompt.write_text(PROMPT)
    env = {"FAKE_CLI_LOG": str(tmp_path / "calls.jsonl"), "FAKE_CLI_MODE": mode}
    return AgentTask(worktree, prompt, ticket_id=7, attempt=1, timeout=30, cancelled=threading.Event(), env=env)


def run_adapter(name: str, task: AgentTask, **options: Any) -> AgentResult:
    return load_agent(name, AgentOptions(grace_seconds=1, **options)).run(task)


def calls(task: AgentTask) -> list[dict[str, Any]]:
    log = Path(task.env["FAKE_CLI_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("name", list(CASES))
def test_adapter_runs_its_cli_non_interactively_and_reads_usage(name: str, tmp_path: Path, fakes_on_path: None) -> None:
    case, task = CASES[name], make_task(tmp_path)
    result = run_adapter(name, task, model="m1", extra_args=("--verbose",))
    assert (result.error, result.exit_code) == (None, 0), result.transcript
    [call] = calls(task)
    assert call["cli"] == case.cli
    assert call["argv"] == expected_argv(name, task)
    assert call["cwd"] == str(task.worktree)
    assert call["stdin"] == (PROMPT if case.prompt_via == "stdin" else "")
    assert (task.worktree / f"edited-by-{case.cli}.txt").read_text() == PROMPT  # the ticket reached the CLI whole
    assert (result.tokens_in, result.tokens_out) == case.tokens
    assert result.cost_usd == pytest.approx(case.cost)
    assert result.transcript  # the CLI's own output is the transcript


@pytest.mark.parametrize("name", list(CASES))
def test_adapter_reports_the_failure_its_cli_declares(name: str, tmp_path: Path, fakes_on_path: None) -> None:
    case, task = CASES[name], make_task(tmp_path, mode="error")
    result = run_adapter(name, task)
    assert result.exit_code == 1
    if case.error is None:
        assert result.error is None  # a plain nonzero exit: the diff (if any) is still verified
    else:
        assert result.error is not None and result.error.startswith(case.error)


@pytest.mark.parametrize("name", list(CASES))
def test_missing_cli_is_a_clear_error_not_a_crash(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    task = make_task(tmp_path)
    result = run_adapter(name, task)
    cli = CASES[name].cli
    assert result.error is not None
    assert result.error.startswith(f"{cli} not found on PATH; install it or pick another --agent (")
    assert result.exit_code is None and calls(task) == []


def test_the_model_is_optional(tmp_path: Path, fakes_on_path: None) -> None:
    task = make_task(tmp_path)
    assert run_adapter("codex", task).error is None
    assert "--model" not in calls(task)[0]["argv"]


def test_mini_is_told_it_is_configured_and_its_trajectory_stays_outside_the_worktree(
    tmp_path: Path, fakes_on_path: None
) -> None:
    task = make_task(tmp_path)
    run_adapter("mini-swe-agent", task)
    assert calls(task)[0]["env"]["MSWEA_CONFIGURED"] == "true"
    assert (task.prompt_file.parent / "mini.traj.json").is_file()
    assert sorted(p.name for p in task.worktree.iterdir()) == ["edited-by-mini.txt"]


def test_aider_repo_map_cache_is_not_left_in_the_worktree(tmp_path: Path, fakes_on_path: None) -> None:
    task = make_task(tmp_path)
    (task.worktree / ".aider.tags.cache.v4").mkdir()
    run_adapter("aider", task)
    assert not (task.worktree / ".aider.tags.cache.v4").exists()


def test_every_adapter_is_registered_by_its_short_name() -> None:
    for name in [*CASES, "llm", "shell"]:
        assert name in AGENTS
        assert callable(load_agent(name, AgentOptions()).run)
    with pytest.raises(UnknownAgent, match="claude-code"):
        load_agent("claude", AgentOptions())


def test_json_objects_skips_interleaved_stderr_and_reads_pretty_printed_objects() -> None:
    output = 'warning: {not json}\n{"a": 1}\nnoise {"b": 2}\n{\n  "c": {"d": 3}\n}\n'
    assert list(json_objects(output)) == [{"a": 1}, {"c": {"d": 3}}]


def test_codex_drops_its_own_sandbox_only_inside_fleets(tmp_path: Path) -> None:
    from dataclasses import replace

    from workers.agents.codex import CodexAgent

    task = make_task(tmp_path)
    assert CodexAgent.own_sandbox(task) == "workspace-write"
    assert CodexAgent.own_sandbox(replace(task, wrapper=("bwrap", "--unshare-user"))) == "danger-full-access"
