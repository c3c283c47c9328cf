"""A confined command starts straight from the worker, with its filter, limits and cgroups, and dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from system.process import ChildLimits, run_process
from system.sandbox import View, bwrap_missing, confine, seccomp_problem
from workers.cgroups import attempt_cgroup, cgroup_problem

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=f"no sandbox: {bwrap_missing()}")
ENV = {"PATH": "/usr/bin:/bin"}


def _confined(tmp_path: Path) -> tuple[str, ...]:
    return confine(View(workdir=tmp_path, writable=(tmp_path,)))


def _status(field: str) -> str:
    return f"grep '^{field}:' /proc/self/status | cut -f2"


def test_the_command_runs_under_its_filter_and_limits_with_no_descriptor_of_the_start(tmp_path: Path) -> None:
    limits = ChildLimits(address_space=2**30, processes=321)
    script = f"ulimit -v; ulimit -c; ulimit -p; {_status('Seccomp')}; {_status('NoNewPrivs')}; ls /proc/self/fd"
    result = run_process([*_confined(tmp_path), "/bin/sh", "-c", script], cwd=tmp_path, env=ENV, timeout=30,
                         limits=limits)  # fmt: skip
    assert result.exit_code == 0, result.output
    address_space, core, processes, seccomp, no_new_privs, *fds = result.output.split()
    assert (address_space, core, processes) == (str(2**30 // 1024), "0", "321")
    assert seccomp == ("2" if seccomp_problem() is None else "0") and no_new_privs == "1"
    assert sorted(fds) == ["0", "1", "2", "3"]  # stdin, output twice, and ls's own: the start's pipes are closed


def test_the_prefix_started_any_other_way_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = subprocess.run([*_confined(tmp_path), "/bin/sh", "-c", f"touch {marker}"], capture_output=True, text=True)
    assert done.returncode != 0 and "Invalid fd" in done.stderr
    assert not marker.exists()


def test_the_worker_starts_bubblewrap_itself(tmp_path: Path) -> None:
    started = threading.Event()
    seen: list[str] = []

    def watch() -> None:
        started.wait(20)
        seen.extend(os.readlink(f"/proc/{pid}/exe") for pid in _children_of_this_process())

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = run_process([*_confined(tmp_path), "/bin/sh", "-c", "echo ready; sleep 2"], cwd=tmp_path, env=ENV,
                         timeout=30, on_output=lambda _: started.set())  # fmt: skip
    watcher.join()
    assert result.exit_code == 0, result.output
    assert [Path(exe).name for exe in seen] == ["bwrap"]  # no setpriv, prlimit or shell in between


def _children_of_this_process() -> list[int]:
    return [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]


def test_a_confined_command_dies_when_its_worker_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    worker = textwrap.dedent(
        f"""
        from pathlib import Path
        from system.process import run_process
        from system.sandbox import View, confine
        wrapper = confine(View(workdir=Path({str(tmp_path)!r}), writable=(Path({str(tmp_path)!r}),)))
        run_process([*wrapper, "sh", "-c", "sleep 60 & echo $! > pid; wait"], cwd=Path("."), env={ENV!r},
                    timeout=60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    sleepers = _sleepers_under(proc.pid)
    assert sleepers, "the sandboxed sleep is not among the worker's descendants"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in sleepers):
        assert time.monotonic() < deadline, "the sandboxed command outlived its worker"
        time.sleep(0.05)


def _sleepers_under(root: int) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in map(int, (task / "children").read_text().split()):
                todo.append(child)
                if Path(f"/proc/{child}/comm").read_text().strip() == "sleep":
                    found.append(child)
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.skipif(cgroup_problem() is not None, reason=f"no cgroups: {cgroup_problem()}")
def test_the_command_starts_inside_the_attempt_cgroups(tmp_path: Path) -> None:
    with attempt_cgroup(1, 50, 256) as group:
        assert group is not None
        result = run_process([*_confined(tmp_path), "/bin/sh", "-c", "cat /proc/self/cgroup"], cwd=tmp_path,
                             env=ENV, timeout=30, join_cgroups=group.procs_files)  # fmt: skip
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        for controller in ("pids", "memory"):
            assert any(f":{controller}:" in line and line.endswith(group.pids_dir.name) for line in lines), lines


def test_a_sandbox_that_cannot_join_its_cgroups_never_runs_its_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    missing = tmp_path / "no-such-cgroup" / "cgroup.procs"
    result = run_process([*_confined(tmp_path), "/bin/sh", "-c", f"touch {marker}"], cwd=tmp_path, env=ENV,
                         timeout=30, join_cgroups=(missing,))  # fmt: skip
    assert not result.ok
    assert result.output.startswith("the sandbox could not be given its limits or cgroups (")
    assert "No such file or directory" in result.output
    time.sleep(0.5)  # a command let go would have touched it by now
    assert not marker.exists()
