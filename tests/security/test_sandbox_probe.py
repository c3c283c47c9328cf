"""The sandbox probe: a program's answer is kept; a probe that could not run is no reason to go without a sandbox,
and is asked again."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from system import sandbox


def _program(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_probe_that_timed_out_leaves_the_sandbox_on_and_the_next_call_probes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "PROBE_TIMEOUT", 0.2)
    exe = _program(tmp_path / "bwrap", "exec sleep 5")
    assert sandbox.sandbox_problem(exe) is None  # a loaded machine: no answer, and no way out of the sandbox
    _program(tmp_path / "bwrap", 'echo "user namespaces are off" >&2; exit 1')
    assert sandbox.sandbox_problem(exe) == "user namespaces are off"  # asked again: this time it answered


def test_a_probe_bubblewrap_ended_for_want_of_processes_is_no_answer_and_is_asked_again(tmp_path: Path) -> None:
    """Where "Resource temporarily unavailable" was kept as the machine's answer: every agent then ran unsandboxed."""
    real = shutil.which("bwrap")
    if real is None or os.geteuid() != 0:
        pytest.skip("needs bubblewrap, and root to run it as another user with one process allowed")
    one_process = "setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --nproc=1"
    exe = _program(tmp_path / "bwrap", f'exec {one_process} {real} "$@"')  # its clone() fails with EAGAIN
    assert sandbox.sandbox_problem(exe) is None
    _program(tmp_path / "bwrap", 'echo "user namespaces are off" >&2; exit 1')
    assert sandbox.sandbox_problem(exe) == "user namespaces are off"


def test_an_agent_whose_probe_could_not_run_still_gets_its_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "PROBE_TIMEOUT", 0.2)
    _program(tmp_path / "bwrap", "exec sleep 5")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert sandbox.bwrap_missing() is None  # None: the agent runs in its sandbox, with no warning to go without


def test_a_program_that_answered_is_not_asked_again(tmp_path: Path) -> None:
    exe = _program(tmp_path / "bwrap", 'echo "user namespaces are off" >&2; exit 1')
    assert sandbox.sandbox_problem(exe) == "user namespaces are off"
    _program(tmp_path / "bwrap", "exit 0")
    assert sandbox.sandbox_problem(exe) == "user namespaces are off"


@pytest.mark.parametrize(
    ("ending", "timeout"),
    [("sleep 0.3; exit 0", sandbox.PROBE_TIMEOUT), ("exec sleep 5", 0.3)],
    ids=["answered", "could not run"],
)
def test_threads_that_ask_at_once_share_one_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str, timeout: float
) -> None:
    """Answered or not: where threads that waited through a probe that could not run each ran one, in turn."""
    monkeypatch.setattr(sandbox, "PROBE_TIMEOUT", timeout)
    runs = tmp_path / "runs"
    exe = _program(tmp_path / "bwrap", f"echo run >> {runs}; {ending}")
    answers: list[str | None] = []
    threads = [threading.Thread(target=lambda: answers.append(sandbox.sandbox_problem(exe))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [None] * 4
    assert runs.read_text().splitlines() == ["run"]
