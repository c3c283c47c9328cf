"""Run one external command in its own process group, with a time limit, cancellation and bounded output."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from system.command_wait import OutputPipe, wait_reading
from system.files import memory_holding, program_on
from system.rlimits import HARD_KINDS, capped, commands_descriptors, commands_file_size, limited
from system.sandbox_start import (
    END_SECONDS,
    NO_OUTCOME,
    Outcome,
    SandboxStartFailed,
    admit,
    is_confined,
    prepared,
    wait_sandbox_end,
)

log = logging.getLogger(__name__)
REST_SECONDS = 5.0  # how long the output is read after the command's end, for what its last writers wrote
KILLED_SECONDS = 5.0  # how long a killed command's exit is waited for
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


# Every agent, setup and test command runs under these: a runaway build or a fork bomb stops at its own limit
# instead of taking the worker down. (RLIMIT_NPROC counts the user's processes and does not bind root.)
DEFAULT_ADDRESS_SPACE = 16 * 2**30


@dataclass(frozen=True)
class ChildLimits:
    """The rlimits a command starts under. address_space 0: none (Node's WebAssembly and Bun reserve far more
    address space than they use, so a Node-based agent CLI needs it off or high; a memory cgroup binds anyway)."""

    address_space: int = DEFAULT_ADDRESS_SPACE
    processes: int = 4096

    def table(self) -> tuple[tuple[int, int], ...]:
        """(kind, limit) pairs; a limit of RLIM_INFINITY is left as inherited."""
        space = self.address_space if self.address_space > 0 else resource.RLIM_INFINITY
        descriptors = commands_descriptors()  # the worker raised its own: its commands start under the old one
        kept = () if descriptors == resource.RLIM_INFINITY else ((resource.RLIMIT_NOFILE, descriptors),)
        files = (resource.RLIMIT_FSIZE, commands_file_size())
        return (
            (resource.RLIMIT_AS, space),
            (resource.RLIMIT_NPROC, self.processes),
            (resource.RLIMIT_CORE, 0),
            files,
            *kept,
        )


DEFAULT_LIMITS = ChildLimits()
PRLIMIT_NAMES = {
    resource.RLIMIT_AS: "as",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_FSIZE: "fsize",
}


def launcher(limits: ChildLimits = DEFAULT_LIMITS) -> tuple[str, ...] | None:
    """`setpriv` and `prlimit` as an argv prefix that gives the command PDEATHSIG and the limits; None when
    either is missing.

    Doing the same in preexec_fn makes Python fork the whole worker (its memory map, a hundred threads'
    stacks) for every command; without preexec_fn it spawns with vfork, at a tenth of the worker's CPU.
    preexec_fn (_child_setup) remains the way when setpriv or prlimit is missing.
    """
    return _launcher(limits.table())


@functools.cache
def _launcher(table: tuple[tuple[int, int], ...]) -> tuple[str, ...] | None:
    setpriv, prlimit = program_on("setpriv", None), program_on("prlimit", None)
    if setpriv is None or prlimit is None:
        return None
    options = [f"--{PRLIMIT_NAMES[kind]}={_prlimit_values(kind, limit)}" for kind, limit in table]
    return (setpriv, "--pdeathsig", "KILL", "--", prlimit, *options, "--")


def _prlimit_values(kind: int, limit: int) -> str:
    """prlimit's `soft:hard` for kind: the hard limit left as it is, but for HARD_KINDS."""
    value = capped(limit, resource.getrlimit(kind)[1])
    soft = "unlimited" if value == resource.RLIM_INFINITY else str(value)
    return f"{soft}:{soft}" if kind in HARD_KINDS and value != resource.RLIM_INFINITY else f"{soft}:"


def joining(procs_files: Sequence[Path]) -> tuple[str, ...]:
    """An argv prefix that writes its own pid into each cgroup.procs file, then execs the command: the
    command is in its cgroups before it starts anything. The script is fixed; the paths are its arguments."""
    writes = "".join(f'echo $$ > "${n}" && ' for n in range(1, len(procs_files) + 1))
    return ("/bin/sh", "-c", f'{writes}shift {len(procs_files)} && exec "$@"', "fleet-cgroup", *map(str, procs_files))


def _unrunnable(program: str, cwd: Path, env: Mapping[str, str]) -> str | None:
    """Why exec would refuse program (in its words), or None when it can run."""
    if "/" not in program:
        return None if shutil.which(program, path=env.get("PATH", os.defpath)) else "No such file or directory"
    path = cwd / program
    if not path.exists():
        return "No such file or directory"
    return None if path.is_file() and os.access(path, os.X_OK) else "Permission denied"


def _child_setup(join_cgroups: Sequence[Path] = (), limits: ChildLimits = DEFAULT_LIMITS) -> None:
    """In the child before exec: die with the worker (kill -9 included), join the cgroups, take the rlimits."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for procs in join_cgroups:  # before exec, so every process the command starts is counted from the first
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    for kind, limit in limits.table():
        new = limited(kind, resource.getrlimit(kind), limit)
        if new is not None:
            resource.setrlimit(kind, new)


@dataclass(frozen=True)
class ProcessResult:
    """How a command ended and what it printed (stdout and stderr interleaved, trimmed in the middle)."""

    exit_code: int | None
    output: str
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    not_found: bool = False
    output_bytes: int = 0
    sandbox_failed: bool = False  # its sandbox never started the command: bubblewrap's own error is the output

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled or self.not_found or self.sandbox_failed)

    @property
    def sandbox_error(self) -> str | None:
        """Why the command's sandbox never started it (bubblewrap's last line), or None when it did."""
        if not self.sandbox_failed:
            return None
        said = self.output.strip().splitlines()[-1:] or ["no output"]
        return f"the sandbox could not start the command: {said[0]}"


class BoundedOutput:
    """Keeps the first and last bytes of a stream, so megabytes of output cost a fixed amount of memory."""

    def __init__(self, limit_bytes: int) -> None:
        self.head_limit = limit_bytes // 4
        self.tail_limit = limit_bytes - self.head_limit
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail.append(chunk)
            self.tail_size += len(chunk)
            while self.tail and self.tail_size - len(self.tail[0]) >= self.tail_limit:
                self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.tail_limit :] if self.tail else b""
        omitted = self.total - len(self.head) - len(tail)
        middle = f"\n[... {omitted} bytes omitted ...]\n".encode() if omitted > 0 else b""
        return (bytes(self.head) + middle + tail).decode("utf-8", errors="replace")


def _kill_leftovers(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_group(proc: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """TERM the whole process group, then KILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        _kill_leftovers(proc)  # the leader exited; children in the group may still live
        return


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    cancelled: threading.Event | None = None,
    limit_bytes: int = 256_000,
    grace_seconds: float = 5.0,
    stdin: bytes | None = None,
    join_cgroups: Sequence[Path] = (),
    pass_fds: Sequence[int] = (),
    on_output: Callable[[bytes], None] | None = None,
    limits: ChildLimits = DEFAULT_LIMITS,
) -> ProcessResult:
    """Run argv (never through a shell unless argv says so) and wait for it, the time limit or cancellation.

    join_cgroups: `cgroup.procs` files the child writes its pid into before exec (workers/cgroups.py).
    pass_fds: descriptors the command inherits (verification's results channel).
    on_output: called with each chunk of output as it is read, in the reader thread (a live transcript).
    limits: the rlimits it starts under (an agent's come from its settings).
    """
    started = time.monotonic()
    command = Command(argv, cwd, env, stdin, tuple(pass_fds), tuple(join_cgroups), limits)
    finish = functools.partial(_finish, started, timeout, cancelled, limit_bytes, grace_seconds, on_output)
    if is_confined(argv):
        return _run_confined(command, timeout, finish)
    spawned = _start(command)
    return spawned if isinstance(spawned, ProcessResult) else finish(spawned)


def _run_confined(
    command: Command, timeout: float, finish: Callable[[subprocess.Popen[bytes]], ProcessResult], retries: int = 2
) -> ProcessResult:
    """The command run in its sandbox; started again (at most `retries` times) when the sandbox never ran it for a
    cover it lost as it started (sandbox_start.Outcome.lost_a_cover): the start made again leaves that cover out."""
    spawned, sandbox, outcome = _start_confined(command, timeout)
    if isinstance(spawned, ProcessResult):
        return spawned
    try:
        result = finish(spawned)
    except BaseException:
        if sandbox is not None:
            os.close(sandbox)
        outcome.close()
        raise
    if sandbox is None:  # bubblewrap exited before its sandbox ran the command: it says why
        result = replace(result, sandbox_failed=True)
    elif not wait_sandbox_end(sandbox):  # nothing it started runs on after this
        log.warning("a sandbox's processes were not all ended %gs after its command", END_SECONDS)
    if not (result.timed_out or result.cancelled) and outcome.lost_a_cover() and retries:
        log.info("a path a sandbox covers was removed as it started: it starts again without that cover")
        return _run_confined(command, timeout, finish, retries - 1)
    return result


@dataclass(frozen=True)
class Command:
    """What run_process starts: the argv and how it starts."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdin: bytes | None
    pass_fds: tuple[int, ...]
    join_cgroups: tuple[Path, ...]
    limits: ChildLimits


def _start(command: Command) -> subprocess.Popen[bytes] | ProcessResult:
    """The command behind the launcher (or preexec_fn without it), or why it could not start."""
    argv = command.argv
    prefix = launcher(command.limits)
    if prefix is not None and command.join_cgroups:
        prefix = (*prefix, *joining(command.join_cgroups))
    unrunnable = _unrunnable(argv[0], command.cwd, command.env) if prefix else None  # the launcher hides why
    if unrunnable:
        return ProcessResult(None, f"{argv[0]}: {unrunnable}", 0.0, not_found=True)
    setup = None if prefix else functools.partial(_child_setup, command.join_cgroups, command.limits)
    return _popen(command, [*(prefix or ()), *argv], command.pass_fds, setup)


def _start_confined(
    command: Command, timeout: float
) -> tuple[subprocess.Popen[bytes] | ProcessResult, int | None, Outcome]:
    """bwrap started straight from the worker, its sandbox given the limits and cgroups (system/sandbox_start.py),
    a pidfd of the sandbox's first process, which the caller waits on once the command is over, and what tells then
    whether the sandbox lost a cover.

    A sandbox that exits during its start (bwrap's own error) is returned as started: its output says why."""
    started, proc = time.monotonic(), None
    try:
        with prepared(command.argv) as start:
            proc = _popen(command, start.argv, (*command.pass_fds, *start.pass_fds), None)
            if isinstance(proc, ProcessResult):
                return proc, None, NO_OUTCOME
            pidfd = admit(start, proc.pid, command.limits.table(), command.join_cgroups, timeout)
            return proc, pidfd, start.outcome()
    except SandboxStartFailed as exc:
        if isinstance(proc, subprocess.Popen):
            _abandon(proc)
        return ProcessResult(None, str(exc), time.monotonic() - started, sandbox_failed=True), None, NO_OUTCOME
    except BaseException:
        if isinstance(proc, subprocess.Popen):
            _abandon(proc)
        raise


def _abandon(proc: subprocess.Popen[bytes]) -> None:
    """Kill a sandbox whose start failed (it is still in bwrap's process group, waiting) and close its pipes."""
    kill_group(proc, grace_seconds=0.0)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _popen(
    command: Command, argv: Sequence[str], pass_fds: Sequence[int], setup: Callable[[], None] | None
) -> subprocess.Popen[bytes] | ProcessResult:
    made: list[int] = []  # stdin is a memory file holding it whole: nothing to feed while the output is read
    try:
        return subprocess.Popen(
            argv,
            cwd=command.cwd,
            env=dict(command.env),
            stdin=subprocess.DEVNULL if command.stdin is None else memory_holding(command.stdin, made),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=setup,
            pass_fds=tuple(pass_fds),
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        return ProcessResult(None, f"{argv[0]}: {exc.strerror}", 0.0, not_found=True)
    finally:
        for fd in made:
            os.close(fd)


def _finish(
    started: float,
    timeout: float,
    cancelled: threading.Event | None,
    limit_bytes: int,
    grace_seconds: float,
    on_output: Callable[[bytes], None] | None,
    proc: subprocess.Popen[bytes],
) -> ProcessResult:
    """Read the output and wait for proc, the time limit or cancellation, in this thread (system/command_wait)."""
    sink = BoundedOutput(limit_bytes)
    pipe = OutputPipe(proc.stdout, sink.write if on_output is None else functools.partial(_tee, sink, on_output))
    try:
        timed_out, was_cancelled = wait_reading(proc, started + timeout, cancelled, pipe)
        if timed_out or was_cancelled:
            _end_group(proc, grace_seconds, pipe)
        else:
            _kill_leftovers(proc)  # the command ended; its background children must not outlive it
        pipe.read_rest(REST_SECONDS)
    except BaseException:
        kill_group(proc, grace_seconds=0.0)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    return ProcessResult(
        exit_code=proc.returncode,
        output=sink.text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=was_cancelled,
        output_bytes=sink.total,
    )


def _tee(sink: BoundedOutput, on_output: Callable[[bytes], None], chunk: bytes) -> None:
    sink.write(chunk)
    on_output(chunk)


def _end_group(proc: subprocess.Popen[bytes], grace_seconds: float, pipe: OutputPipe) -> None:
    """TERM the whole process group, its output still read for the grace period; then KILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    wait_reading(proc, time.monotonic() + grace_seconds, None, pipe)
    _kill_leftovers(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILLED_SECONDS)
