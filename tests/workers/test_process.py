"""run_process: the command dies with its worker, runs under the child limits, and a missing program is named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from system.process import launcher, run_process

ENV = {"PATH": "/usr/bin:/bin"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_command_dies_when_its_worker_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    worker = textwrap.dedent(
        f"""
        from pathlib import Path
        from system.process import run_process
        run_process(["sh", "-c", "echo $$ > {pid_file}; exec sleep 60"], cwd=Path("."), env={ENV!r}, timeout=60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", worker])
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    command = int(pid_file.read_text())
    assert _alive(command)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(command):
        assert time.monotonic() < deadline, "the command outlived its worker"
        time.sleep(0.05)


def test_commands_run_under_the_child_limits_and_a_missing_program_is_named(tmp_path: Path) -> None:
    limits = run_process(["sh", "-c", "ulimit -v; ulimit -c"], cwd=tmp_path, env=ENV, timeout=10)
    assert limits.output.split() == [str(16 * 2**30 // 1024), "0"]
    missing = run_process(["no-such-program-here"], cwd=tmp_path, env=ENV, timeout=10)
    assert missing.not_found and missing.output == "no-such-program-here: No such file or directory"
    (tmp_path / "script.sh").write_text("echo hi\n")
    denied = run_process(["./script.sh"], cwd=tmp_path, env=ENV, timeout=10)
    assert denied.not_found and denied.output == "./script.sh: Permission denied"
    assert launcher() is not None  # util-linux (setpriv, prlimit) is on every machine Fleet runs on
