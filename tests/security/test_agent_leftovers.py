"""The files an agent writes for the worker to read once it ended (a hosted class's result, mini-swe-agent's
trajectory) are in its own scratch folder, where the sandboxed agent can put anything: the worker reads each only
as a regular file, bounded, never through a link."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from workers.agents.base import AgentOptions
from workers.agents.cli import Usage, scratch_file
from workers.agents.contracts import AgentTask
from workers.agents.hosted import _read_result
from workers.agents.mini_swe_agent import TRAJECTORY, MiniSweAgent

A_RESULT = {"exit_code": 0, "transcript": "the host's file", "duration": 1.0, "tokens_in": 7}
A_TRAJECTORY = {"messages": [{"extra": {"response": {"usage": {"prompt_tokens": 7, "completion_tokens": 3}}}}]}


@pytest.fixture
def task(tmp_path: Path) -> AgentTask:
    (tmp_path / "agent").mkdir()
    return AgentTask(tmp_path, tmp_path / "agent" / "prompt.md", 1, 1, 60.0, threading.Event())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("target", ["/dev/zero", "a host file"])
def test_a_result_file_linked_elsewhere_is_no_result(tmp_path: Path, task: AgentTask, target: str) -> None:
    """Followed, /dev/zero (size 0, so under the size check) was read until the worker's memory ran out."""
    result, trajectory = tmp_path / "agent" / "hosted-result.json", scratch_file(task, TRAJECTORY)
    if target == "/dev/zero":
        result.symlink_to("/dev/zero")
        trajectory.symlink_to("/dev/zero")
    else:
        (tmp_path / "result.json").write_text(json.dumps(A_RESULT))
        (tmp_path / "trajectory.json").write_text(json.dumps(A_TRAJECTORY))
        result.symlink_to(tmp_path / "result.json")
        trajectory.symlink_to(tmp_path / "trajectory.json")
    assert _read_result(result, 1_000_000) is None
    assert MiniSweAgent(AgentOptions()).parse_usage("", task) == Usage()


def test_the_same_files_written_in_place_are_read(tmp_path: Path, task: AgentTask) -> None:
    result = tmp_path / "agent" / "hosted-result.json"
    result.write_text(json.dumps(A_RESULT))
    scratch_file(task, TRAJECTORY).write_text(json.dumps(A_TRAJECTORY))
    read = _read_result(result, 1_000_000)
    assert read is not None and read.transcript == "the host's file" and read.tokens_in == 7
    assert _read_result(result, 10) is None  # over the limit
    assert MiniSweAgent(AgentOptions()).parse_usage("", task) == Usage(tokens_in=7, tokens_out=3)
