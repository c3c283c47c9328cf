"""The llm agent against the scripted OpenAI-compatible server on loopback: the loop, its limits, and a bad server."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from workers.agents import AgentOptions, load_agent
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.llm.scripted_server import ScriptedModelServer, completion
from workers.agents.scripted import write_sample_repo


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer("fix-add", delay=2.0) as running:
        yield running


@pytest.fixture(autouse=True)
def llm_env(monkeypatch: pytest.MonkeyPatch, server: ScriptedModelServer) -> None:
    for name in [n for n in os.environ if n.startswith("FLEET_LLM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLEET_LLM_BASE_URL", server.url)
    monkeypatch.setenv("FLEET_LLM_MODEL", "scripted")
    monkeypatch.setenv("FLEET_LLM_BACKOFF_SECONDS", "0.01")


@pytest.fixture
def task(tmp_path: Path) -> AgentTask:
    worktree = tmp_path / "calc"
    write_sample_repo(worktree)
    prompt = tmp_path / "prompt.md"
    prompt.write_text("add() subtracts\n\ntests/test_calc.py::test_add fails\n")
    return AgentTask(worktree, prompt, ticket_id=1, attempt=1, timeout=30, cancelled=threading.Event())


def run_llm(task: AgentTask, *args: str, model: str | None = None, transcript_limit: int = 256_000) -> AgentResult:
    options = AgentOptions(model=model, extra_args=args, grace_seconds=1, transcript_limit=transcript_limit)
    return load_agent("llm", options).run(task)


def lines(result: AgentResult) -> list[dict]:
    return [json.loads(line) for line in result.transcript.splitlines()]


def test_the_model_fixes_the_bug_and_says_it_is_done(task: AgentTask, server: ScriptedModelServer) -> None:
    result = run_llm(task, "price_in=2", "price_out=8")
    assert (result.error, result.exit_code) == (None, 0)
    assert "return a + b" in (task.worktree / "calc.py").read_text()
    assert len(server.requests) == 3  # read, edit, FLEET_DONE
    usage = [completion("scripted", msgs, "")["usage"] for _, msgs in server.requests]
    assert result.tokens_in == sum(u["prompt_tokens"] for u in usage)
    assert result.cost_usd == pytest.approx((result.tokens_in * 2 + result.tokens_out * 8) / 1e6)
    records = lines(result)
    assert [r.get("role") for r in records[:2]] == ["system", "user"]
    assert "tests/test_calc.py::test_add fails" in records[1]["content"]
    observation = next(r for r in records if r.get("kind") == "observation")
    assert observation["exit_code"] == 0 and "def add(a, b)" in observation["content"]
    assert records[-1] == {
        "event": "end",
        "reason": "finished",
        "steps": 3,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost_usd": result.cost_usd,
    }


def test_each_command_runs_in_the_worktree_without_the_api_key(
    task: AgentTask, server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_LLM_API_KEY", "sk-test-0123456789")
    result = run_llm(task)
    assert result.error is None
    assert "sk-test-0123456789" not in result.transcript
    env_seen = server.requests[-1][1]  # the conversation the model saw holds the command output
    assert all("sk-test" not in m["content"] for m in env_seen)


def test_a_model_that_never_finishes_hits_the_step_limit(task: AgentTask, server: ScriptedModelServer) -> None:
    result = run_llm(task, "step_limit=3", model="never-finish")
    assert result.error == "llm agent stopped: step limit of 3 reached before FLEET_DONE"
    assert len(server.requests) == 3
    assert lines(result)[-1]["reason"] == result.error


def test_replies_without_one_command_get_a_format_reminder(task: AgentTask) -> None:
    result = run_llm(task, "step_limit=2", model="chatty")
    assert result.error is not None and "step limit of 2" in result.error
    reminders = [r for r in lines(result) if r.get("kind") == "format_error"]
    assert len(reminders) == 2 and "exactly one ```bash block" in reminders[0]["content"]


def test_garbage_from_the_server_is_an_error_naming_it(task: AgentTask, server: ScriptedModelServer) -> None:
    result = run_llm(task, model="garbage")
    assert result.error is not None and result.error.startswith(f"llm agent: model server {server.url}")
    assert "the answer is not JSON: '<html>" in result.error
    assert len(server.requests) == 1  # the same garbage again would not help


def test_server_errors_are_retried_with_backoff(task: AgentTask, server: ScriptedModelServer) -> None:
    result = run_llm(task, "retries=2", model="error-500")
    assert result.error is not None and "HTTP 500" in result.error and "(after 3 tries)" in result.error
    assert len(server.requests) == 3


def test_a_server_that_is_down_is_an_error_after_retries(task: AgentTask, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setenv("FLEET_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    result = run_llm(task, "retries=1")
    assert result.error is not None
    assert f"model server http://127.0.0.1:{port}/v1/chat/completions: unreachable" in result.error
    assert "(after 2 tries)" in result.error


def test_a_slow_server_times_out(task: AgentTask) -> None:
    result = run_llm(task, "request_timeout=0.3", "retries=0", model="slow")
    assert result.error is not None and "no answer within 0.3s" in result.error


def test_token_and_cost_limits_end_the_attempt_with_their_reason(task: AgentTask) -> None:
    by_tokens = run_llm(task, "token_limit=50")
    assert by_tokens.error is not None and by_tokens.error.startswith("llm agent stopped: token limit of 50 exceeded")
    by_cost = run_llm(task, "price_in=1000", "cost_limit=0.05")
    assert by_cost.error is not None and by_cost.error.startswith("llm agent stopped: cost limit of $0.05 exceeded")
    assert by_cost.cost_usd > 0.05


def test_the_wall_time_limit_ends_the_attempt(task: AgentTask) -> None:
    result = run_llm(task, "wall_seconds=0.5", "step_limit=100000", model="never-finish")
    assert result.timed_out and result.error == "llm agent timed out after 0.5s"


def test_a_cancelled_attempt_stops_before_the_next_turn(task: AgentTask, server: ScriptedModelServer) -> None:
    task.cancelled.set()
    result = run_llm(task)
    assert result.cancelled and result.error == "agent cancelled"
    assert server.requests == []


def test_missing_settings_and_bad_arguments_are_clear_errors(task: AgentTask, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "step_limit must be a number" in (run_llm(task, "step_limit=lots").error or "")
    assert "is not field=value" in (run_llm(task, "api_key=sk-x").error or "")  # keys stay off command lines
    monkeypatch.delenv("FLEET_LLM_BASE_URL")
    assert "set FLEET_LLM_BASE_URL" in (run_llm(task).error or "")


def test_a_long_transcript_loses_whole_lines_from_the_middle(task: AgentTask) -> None:
    result = run_llm(task, "step_limit=40", model="never-finish", transcript_limit=4000)
    records = lines(result)  # every line still parses
    assert len(result.transcript) <= 4000 + 200
    assert records[0]["role"] == "system" and records[-1]["event"] == "end"
    assert any(r.get("event") == "omitted" for r in records)


def test_a_slow_server_cannot_outlast_the_wall_time(task: AgentTask) -> None:
    result = run_llm(task, "wall_seconds=0.5", "retries=0", model="slow")  # the server waits 2 s
    assert result.timed_out and result.error == "llm agent timed out after 0.5s"
    assert result.duration < 1.5


def test_the_scripted_server_runs_as_a_module_and_prints_its_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.agents.llm.scripted_server", "--script", "fix-add", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        messages = [{"role": "user", "content": "fix it"}]
        body = httpx.post(f"{url}/chat/completions", json={"model": "x", "messages": messages}, timeout=5).json()
        assert "cat calc.py" in body["choices"][0]["message"]["content"]
        assert body["usage"]["prompt_tokens"] > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_the_conversation_reaches_the_live_transcript_line_by_line(task: AgentTask) -> None:
    chunks: list[bytes] = []
    live = dataclasses.replace(task, on_output=chunks.append)
    result = run_llm(live)
    streamed = b"".join(chunks).decode()
    assert streamed == result.transcript  # each line as it was written; the commands' raw output is not doubled
    assert len(chunks) == len(result.transcript.splitlines())
