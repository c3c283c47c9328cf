"""A confined command starts straight from the worker, with its filter, limits and cgroups, and dies with it."""

from __future__ import annotations

import contextlib
import os
import resource
import select
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
from system.sandbox_start import prepared
from system.seccomp import filter_program
from workers.cgroups import attempt_cgroup, cgroup_problem

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=f"no sandbox: {bwrap_missing()}")
ENV = {"PATH": "/usr/bin:/bin"}


def _confined(tmp_path: Path) -> tuple[str, ...]:
    return confine(View(workdir=tmp_path, writable=(tmp_path,)))


def _status(field: str) -> str:
    return f"grep '^{field}:' /proc/self/status | cut -f2"


def test_the_command_runs_under_its_filter_and_limits_with_no_descriptor_of_the_start(tmp_path: Path) -> None:
    limits = ChildLimits(address_space=2**30, processes=321)
    script = f"ulimit -v; ulimit -c; ulimit -p; {_status('Seccomp')}; {_status('NoNewPrivs')}; ls -l /proc/self/fd"
    result = run_process([*_confined(tmp_path), "/bin/sh", "-c", script], cwd=tmp_path, env=ENV, timeout=30,
                         limits=limits)  # fmt: skip
    assert result.exit_code == 0, result.output
    address_space, core, processes, seccomp, no_new_privs, *listing = result.output.splitlines()
    assert (address_space, core, processes) == (str(2**30 // 1024), "0", "321")
    assert seccomp == ("2" if seccomp_problem() is None else "0") and no_new_privs == "1"
    fds = {line.split()[-3]: line for line in listing if "->" in line}
    beyond = [line for number, line in fds.items() if int(number) > 3]
    assert {"0", "1", "2", "3"} <= set(fds)  # stdin, the output twice, and ls's own
    if seccomp_problem() is None:  # the report pipe and the filter's pipe are closed
        assert beyond == []
    else:  # and the write end of the pipe the sandbox waited on, which nobody reads
        assert len(beyond) == 1 and beyond[0].startswith("l-wx") and "pipe:" in beyond[0]


def test_the_seccomp_filter_is_written_to_its_pipe_at_once() -> None:
    """At most PIPE_BUF bytes: a worker that dies while it writes leaves an empty filter, never a part of one."""
    if seccomp_problem() is not None:
        pytest.skip(seccomp_problem() or "")
    program = filter_program()
    assert 0 < len(program) <= select.PIPE_BUF and len(program) % 8 == 0  # whole BPF instructions


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
    while not (sleepers := _descendants(proc.pid, "sleep")):  # the forked shell may not have become `sleep` yet
        assert time.monotonic() < deadline, "the sandboxed sleep is not among the worker's descendants"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in sleepers):
        assert time.monotonic() < deadline, "the sandboxed command outlived its worker"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


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


def test_a_sandbox_whose_worker_dies_before_letting_it_go_never_runs_its_command(tmp_path: Path) -> None:
    """The worker is killed while it moves the sandbox into a cgroup (a FIFO: the write waits for a reader)."""
    marker, stuck = tmp_path / "ran", tmp_path / "cgroup.procs"
    os.mkfifo(stuck)
    worker = textwrap.dedent(
        f"""
        from pathlib import Path
        from system.process import run_process
        from system.sandbox import View, confine
        folder = Path({str(tmp_path)!r})
        wrapper = confine(View(workdir=folder, writable=(folder,)))
        run_process([*wrapper, "touch", {str(marker)!r}], cwd=folder, env={ENV!r}, timeout=60,
                    join_cgroups=[Path({str(stuck)!r})])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=Path(__file__).resolve().parents[2])
    sandboxes: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not _descendants(proc.pid, "bwrap"):
            assert time.monotonic() < deadline, "the sandbox never started"
            time.sleep(0.05)
        time.sleep(0.5)  # the worker is in the cgroup write now: bwrap has reported its sandbox
        sandboxes = _descendants(proc.pid, "bwrap")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        assert not marker.exists()
        if seccomp_problem() is None:  # an empty filter ends the sandbox; without one it waits for ever
            deadline = time.monotonic() + 10
            while any(_state(pid) not in ("Z", "gone") for pid in sandboxes):
                assert time.monotonic() < deadline, "a sandbox left by its dead worker is still there"
                time.sleep(0.05)
    finally:
        sandboxes += _descendants(proc.pid, "bwrap")
        proc.kill()
        proc.wait()
        for pid in sandboxes:  # the one that waits for ever
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _descendants(root: int, name: str) -> list[int]:
    """The pids of root's descendants whose program is name (processes that end meanwhile are skipped)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in map(int, (task / "children").read_text().split()):
                    todo.append(child)
                    with contextlib.suppress(OSError):
                        if Path(f"/proc/{child}/comm").read_text().strip() == name:
                            found.append(child)
    return found


def test_a_sandbox_that_cannot_be_made_says_so_in_bubblewraps_words(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    view = View(workdir=tmp_path, writable=(tmp_path, gone))
    result = run_process([*confine(view), "/bin/true"], cwd=tmp_path, env=ENV, timeout=30)
    assert result.exit_code not in (0, None) and "Can't find source path" in result.output, result.output


def test_a_worker_with_more_than_a_thousand_descriptors_still_starts_sandboxes(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        result = run_process([*_confined(tmp_path), "/bin/sh", "-c", "echo inside"], cwd=tmp_path, env=ENV,
                             timeout=30)  # fmt: skip
        assert result.exit_code == 0 and result.output.strip() == "inside", result.output
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_start_given_up_before_it_lets_the_sandbox_go_never_runs_its_command(tmp_path: Path) -> None:
    """With a filter, bwrap gets an empty one and exits; without, bwrap would go on at the end of its block pipe,
    so the sandbox holds a write end of that pipe itself and waits."""
    marker = tmp_path / "ran"
    with prepared([*_confined(tmp_path), "/bin/touch", str(marker)]) as start:
        sandbox = subprocess.Popen(start.argv, pass_fds=start.pass_fds, start_new_session=True)
    try:  # the worker's ends are closed now, without the byte
        time.sleep(1.0)
        assert not marker.exists()  # (bwrap itself may be gone: nobody read its report)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sandbox.pid, signal.SIGKILL)  # the waiting sandbox is still in bwrap's process group
        sandbox.wait()


def test_a_memory_folder_gets_writable_copies_that_never_reach_the_host(tmp_path: Path) -> None:
    source = tmp_path / "template"
    source.write_text("from the host\n")
    memory = Path("/fleet-test-memory")
    view = View(workdir=tmp_path, writable=(tmp_path,), memory=memory, memory_dirs=(memory / "a" / "b",),
                copies=((source, memory / "a" / "copy"),))  # fmt: skip
    script = (
        "cat /fleet-test-memory/a/copy; echo changed >> /fleet-test-memory/a/copy; touch /fleet-test-memory/a/b/new"
    )
    script += "; cat /fleet-test-memory/a/copy; grep ' /fleet-test-memory ' /proc/self/mountinfo | grep -c tmpfs"
    result = run_process([*confine(view), "/bin/sh", "-c", script], cwd=tmp_path, env=ENV, timeout=30)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["from the host", "from the host", "changed", "1"]
    assert source.read_text() == "from the host\n"  # the copy was written, not the host's file
    assert not memory.exists()  # nothing of the folder is on the host
    again = run_process([*confine(view), "/bin/sh", "-c", "ls /fleet-test-memory/a/b"], cwd=tmp_path, env=ENV,
                        timeout=30)  # fmt: skip
    assert again.exit_code == 0 and again.output == ""  # each sandbox starts from its own empty memory


def test_a_copy_whose_host_file_is_gone_fails_the_start_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    view = View(workdir=tmp_path, writable=(tmp_path,), memory=Path("/fleet-test-memory"),
                copies=((tmp_path / "missing", Path("/fleet-test-memory/copy")),))  # fmt: skip
    result = run_process([*confine(view), "/bin/touch", str(marker)], cwd=tmp_path, env=ENV, timeout=30)
    assert result.exit_code is None and not marker.exists()
    assert result.output == f"the sandbox's copy of {tmp_path / 'missing'} cannot be read (No such file or directory)"


def test_copy_slots_in_the_commands_own_arguments_are_never_opened(tmp_path: Path) -> None:
    """Only bwrap's own options are slots: an argument that looks like one reaches the command as it was written."""
    secret = tmp_path / "secret"
    secret.write_text("host only\n")
    slot = f"<fleet:copy:{secret}>"
    script = 'echo "$@"; ls /proc/self/fd | wc -l'
    argv = [*_confined(tmp_path), "/bin/sh", "-c", script, "sh", "--file", slot, "/tmp/x"]
    result = run_process(argv, cwd=tmp_path, env=ENV, timeout=30)
    assert result.exit_code == 0, result.output
    echoed, descriptors = result.output.splitlines()
    assert echoed == f"--file {slot} /tmp/x"
    # stdin, the output twice, ls's own, and without a filter the write end of the pipe the sandbox waited on
    assert int(descriptors) == (4 if seccomp_problem() is None else 5)


def test_a_timed_out_sandbox_has_no_process_left_when_its_run_returns(tmp_path: Path) -> None:
    """Killing bubblewrap ends its sandbox's processes only after: its first process dies with its parent, and the
    kernel then ends every other. A run returns once that is done, so nothing it started writes in its folders
    when they are emptied for another attempt (workers/attempt_folders.py)."""
    marker = f"fleet-sandbox-end-{os.getpid()}-{time.monotonic_ns()}"
    many = f"for i in $(seq 400); do sh -c 'sleep 600; : {marker}' >/dev/null 2>&1 & done; exec sleep 600"
    result = run_process([*_confined(tmp_path), "/bin/sh", "-c", many], cwd=tmp_path, env=ENV, timeout=3,
                         grace_seconds=0.0)  # fmt: skip
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]
    assert result.timed_out and left == []


def _cmdline_has(process: Path, marker: str) -> bool:
    with contextlib.suppress(OSError):
        return marker.encode() in (process / "cmdline").read_bytes()
    return False


def _unstartable(tmp_path: Path) -> tuple[str, ...]:
    """A sandbox bubblewrap gives up on before making it, as where it cannot create namespaces (here: an option
    it does not know, which it checks at the same point)."""
    bwrap, *rest = _confined(tmp_path)
    return (bwrap, "--no-such-option", *rest)


def test_a_sandbox_that_never_started_its_command_says_so_in_bubblewraps_words(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = run_process([*_unstartable(tmp_path), "/bin/sh", "-c", f"touch {marker}"], cwd=tmp_path, env=ENV,
                         timeout=30)  # fmt: skip
    assert not marker.exists()
    assert result.sandbox_failed and not result.ok
    assert result.sandbox_error is not None and "no-such-option" in result.sandbox_error, result.output


def test_tests_whose_sandbox_never_started_are_an_error_not_a_failure(tmp_path: Path) -> None:
    """Else a test command judged by its exit code failed at the base commit, and every diff would pass it."""
    from verification.runner import run_tests

    run = run_tests(tmp_path, "true", timeout=30, report_dir=tmp_path / "reports", wrapper=_unstartable(tmp_path))
    assert run.error is not None and run.error.startswith("the sandbox could not start the command"), run.output
