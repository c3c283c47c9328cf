"""An agent that crashes (a non-zero exit and no change) ends its attempt as `error`, quoting the line that says why,
and its run stops there; a non-zero exit with a change is still verified; resource limits come from the settings."""

from __future__ import annotations

import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import Fleet
from workers.agents import AgentOptions, load_agent
from workers.agents.outcome import crash_reason, explaining_line
from workers.pipeline.agent_plan import agent_limits

FIX = "sed -i 's/return a - b/return a + b/' calc.py"


def _sh(script: str) -> str:
    return shlex.join(["sh", "-c", script])


def _attempts(fleet: Fleet, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    shown = fleet.json("show", str(ticket["id"]))
    return [a for run in shown["runs"] for a in run["attempts"]]


def test_a_crash_is_an_error_once_and_a_change_is_verified_whatever_the_exit(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    fleet.sample_repo("limited")
    fleet.run("repo", "update", "limited", "--agent-address-space-mb", "2048")
    tickets = {
        "crash": _sh("echo starting; echo 'fatal: cannot read the config' >&2; echo bye; exit 3"),
        "fix-then-fail": _sh(f"{FIX}; exit 1"),
        "idle": _sh("echo nothing to do"),
        "limits": "cat /proc/self/limits",
    }
    submitted = {}
    for name, command in tickets.items():
        repo = "limited" if name == "limits" else "calc"
        body = "tests/test_calc.py::test_add fails"
        [submitted[name]] = fleet.submit(
            "--repo", repo, "--title", name, "--body", body, "--attempts", "2", "--agent-cmd", command
        )
    [default_limits] = fleet.submit("--repo", "calc", "--title", "limits", "--agent-cmd", "cat /proc/self/limits")
    fleet.up()

    [crash] = _attempts(fleet, submitted["crash"])  # two attempts allowed; the crash stopped the run at one
    assert crash["verdict"] == "error"
    assert crash["error"] == "shell exited with code 3 without changing anything: fatal: cannot read the config"
    assert fleet.json("show", str(submitted["crash"]["id"]))["status"] == "error"
    [fixed] = _attempts(fleet, submitted["fix-then-fail"])
    assert fixed["verdict"] == "passed"  # the exit code alone says nothing: the change is verified
    assert [a["verdict"] for a in _attempts(fleet, submitted["idle"])] == ["failed", "failed"]  # tried, failed

    limited = fleet.run("logs", str(_attempts(fleet, submitted["limits"])[0]["id"])).stdout
    assert _address_space(limited) == str(2048 * 2**20)  # the repository's setting
    default = fleet.run("logs", str(_attempts(fleet, default_limits)[0]["id"])).stdout
    assert _address_space(default) == str(16384 * 2**20)  # the worker's default


def _address_space(limits: str) -> str:
    [line] = [line for line in limits.splitlines() if line.startswith("Max address space")]
    return line.split()[3]


def test_the_explaining_line_is_the_error_not_the_usage_text() -> None:
    output = "Usage: tool [OPTIONS]\n  --log-level  [choices: DEBUG, ERROR]\nerror: unexpected argument '--x'\n"
    assert explaining_line(output) == "error: unexpected argument '--x'"
    assert explaining_line("opencode run [message..]\nOptions:\n  --auto  denied (dangerous!)\n").startswith(
        "it printed its usage instead of running"
    )
    assert explaining_line("one\ntwo\n") == "two"
    assert crash_reason("codex", 0, "error: x", changed=False) is None  # exit 0: the verdict decides
    assert crash_reason("codex", 2, "error: x", changed=True) is None  # a change: it is verified
    assert crash_reason("codex", 2, "", changed=False) == "codex exited with code 2 without changing anything"


@pytest.mark.parametrize(
    ("agent", "repo_space", "expected"),
    [("gemini", 0, 0), ("gemini", 4096, 4096), ("claude-code", 0, 16384), ("shell", 0, 16384)],
)
def test_address_space_comes_from_the_repo_then_the_agent_then_the_worker(
    agent: str, repo_space: int, expected: int
) -> None:
    settings = SimpleNamespace(agent_memory_mb=4096, agent_max_processes=1024, agent_address_space_mb=16384)
    repo = SimpleNamespace(agent_memory_mb=0, agent_max_processes=512, agent_address_space_mb=repo_space)
    rt, job = SimpleNamespace(settings=settings), SimpleNamespace(repo_settings=repo, limits_from_file=())
    limits = agent_limits(rt, job, load_agent(agent, AgentOptions()))  # type: ignore[arg-type]
    assert (limits.address_space_mb, limits.memory_mb, limits.processes) == (expected, 4096, 512)
