"""Start a confined command (system/sandbox.py) with no launcher process between the worker and bubblewrap.

confine() leaves descriptor slots in bwrap's options that only this module fills: where bwrap reports its
sandbox's pid (`--info-fd`), and the pipe the sandbox waits on before it runs the command: its seccomp filter
(`--seccomp`), or, where there is no filter, one byte (`--block-fd`). Between the two, the worker gives the
sandbox's first process the command's rlimits (prlimit(2)) and moves it into the attempt's cgroups; only then
does it write into that pipe. The command is forked from that process after, so it starts inside both.

bwrap reads its filter to the end of the pipe: a worker that dies or gives up before writing leaves it an empty
filter, which bwrap refuses, and the sandbox exits without running the command. The filter is written at once or
not at all (it is smaller than PIPE_BUF). `--block-fd` goes on at end of file too, so without a filter the
sandbox holds a write end of that pipe itself: it waits for ever instead of running unconfined. Once running,
bwrap's `--die-with-parent` ends it with the worker.

A cover (system/covers.py) is a slot too, made at each start as its path is then (cover_args): an agent's prefix
serves every command of its attempt, and bwrap cannot make the cover of a path removed meanwhile in the read-only
folder that held it, so one removed file failed every later command. Left unfilled, bwrap finds no source: no
sandbox. A path removed in the moment between that look and bwrap's mount still fails its start; bwrap's status
(`--json-status-fd`) then says it never ran the command, and the start is made again (Outcome.lost_a_cover).

A prefix of `setpriv`, `prlimit` and two shells did the same in four more program starts per command (about
3 ms of the machine each time: bench/floor.py). A prefix run any other way fails closed: bwrap refuses the
slots as descriptors, so no command runs without its filter, limits and cgroups.

A worker and its sandboxes run as one user (setting another user's process's limits needs CAP_SYS_RESOURCE).
The limits apply inside the sandbox's own user namespace: RLIMIT_NPROC counts the sandbox's processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from system.covers import cover_args
from system.rlimits import limited
from system.seccomp import filter_program

INFO_SLOT = "<fleet:info-fd>"
BLOCK_SLOT = "<fleet:block-fd>"
SECCOMP_SLOT = "<fleet:seccomp-fd>"
STATUS_SLOT = "<fleet:status-fd>"
SLOTS = {"--info-fd": INFO_SLOT, "--block-fd": BLOCK_SLOT, "--seccomp": SECCOMP_SLOT, "--json-status-fd": STATUS_SLOT}
COPY_SLOT = "<fleet:copy:{}>"  # `--file <slot> DEST`: a writable copy of the host file named in the slot
COVER_SLOT = "<fleet:cover>"  # `--ro-bind <slot> PATH`: PATH covered as it is at the start, left out once removed
INFO_LIMIT_BYTES = 65_536
START_TIMEOUT_SECONDS = 60.0  # bwrap reports its sandbox in milliseconds; a start that takes this long is stuck
GO = b"1"
END_SECONDS = 30.0  # for a killed sandbox's processes to be ended by the kernel (thousands take a while)


class SandboxStartFailed(Exception):
    """The sandbox could not be given its limits or cgroups, or never said where it is; it never ran its command."""


def is_confined(argv: Sequence[str]) -> bool:
    return INFO_SLOT in _slot_positions(argv)


def copy_slot(source: Path) -> str:
    """The slot for `--file`: the start opens source read-only and bwrap copies it into the sandbox."""
    return COPY_SLOT.format(source)


def cover_slots(paths: Sequence[Path]) -> list[str]:
    """The slots that cover paths at each start (prepared)."""
    return [arg for path in paths for arg in ("--ro-bind", COVER_SLOT, str(path))]


def _covered_now(argv: Sequence[str], options_end: int) -> tuple[list[str], tuple[Path, ...]]:
    """argv with each cover slot among bwrap's own options (before options_end) made the cover its path needs now,
    and the paths covered."""
    made: list[str] = []
    paths: list[Path] = []
    index = 0
    while index < len(argv):
        if index < options_end and tuple(argv[index : index + 2]) == ("--ro-bind", COVER_SLOT):
            path = Path(argv[index + 2])
            cover = cover_args([path])  # nothing for a path removed since the sandbox's settings were built
            made += cover
            paths += [path] if cover else []
            index += 3
        else:
            made.append(argv[index])
            index += 1
    return made, tuple(paths)


def _copy_sources(argv: Sequence[str], options_end: int) -> dict[int, Path]:
    """Where each copy slot stands as the value of `--file` among bwrap's own options (before options_end: the
    command's arguments after them are never read as slots), and the host file it names."""
    prefix, suffix = COPY_SLOT.split("{}")
    return {
        index + 1: Path(value[len(prefix) : -len(suffix)])
        for index, (option, value) in enumerate(zip(argv[:options_end], argv[1:options_end], strict=False))
        if option == "--file" and value.startswith(prefix) and value.endswith(suffix)
    }


def _slot_positions(argv: Sequence[str]) -> dict[str, int]:
    """Where each slot stands as the value of its own option (the first such pair)."""
    found: dict[str, int] = {}
    for index, (option, value) in enumerate(zip(argv, argv[1:], strict=False)):
        if SLOTS.get(option) == value and value not in found:
            found[value] = index + 1
    return found


@dataclass
class Start:
    """One confined start: its argv, the descriptors bwrap gets, and the worker's ends of them."""

    argv: list[str]
    child_fds: list[int] = field(default_factory=list)  # closed in the worker once bwrap has them
    info_read: int = -1
    gate: int = -1  # the worker's end of the pipe the sandbox waits on
    message: bytes = b""  # what lets it go: its seccomp filter, or one byte
    held_by_sandbox: tuple[int, ...] = ()  # the worker's descriptors bwrap gets too
    status_read: int = -1  # bwrap's status (--json-status-fd): whether it ran the command
    covers: tuple[Path, ...] = ()  # the paths this start covers

    def outcome(self) -> Outcome:
        """What tells, once the sandbox has ended, whether it lost a cover; the start no longer closes it."""
        outcome, self.status_read = Outcome(self.status_read, self.covers), -1
        return outcome

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (*self.child_fds, *self.held_by_sandbox)

    def release_child_ends(self) -> None:
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = []

    def let_go(self) -> None:
        os.write(self.gate, self.message)
        self._close_gate()  # a filter is read to the end of the pipe

    def _close_gate(self) -> None:
        if self.gate >= 0:
            os.close(self.gate)
        self.gate = -1

    def close(self) -> None:
        self.release_child_ends()
        self._close_gate()
        for fd in (self.info_read, self.status_read):
            if fd >= 0:
                os.close(fd)
        self.info_read = self.status_read = -1


@dataclass
class Outcome:
    """A started sandbox's status pipe (bwrap's `--json-status-fd`, -1 without one) and the paths it covers."""

    status_read: int
    covers: tuple[Path, ...]

    def lost_a_cover(self) -> bool:
        """Once the sandbox has ended: whether bwrap never ran the command (its status holds no exit code) and a path
        it was to cover is gone. bwrap could not make that cover in the read-only folder that held it: the path went
        in the moment between the start's look and bwrap's mount. Closes the pipe."""
        if self.status_read < 0:
            return False
        status = b""
        try:
            os.set_blocking(self.status_read, False)
            with contextlib.suppress(BlockingIOError):
                status = os.read(self.status_read, INFO_LIMIT_BYTES)
        finally:
            self.close()
        return b'"exit-code"' not in status and not all(map(os.path.exists, self.covers))

    def close(self) -> None:
        if self.status_read >= 0:
            os.close(self.status_read)
        self.status_read = -1


NO_OUTCOME = Outcome(-1, ())  # a start that never began: no pipe, no covers


@contextlib.contextmanager
def prepared(argv: Sequence[str]) -> Iterator[Start]:
    """argv with its slots filled by fresh descriptors; all of them are closed when the block ends."""
    covered_argv, covers = _covered_now(argv, _slot_positions(argv).get(INFO_SLOT, 0))
    start = Start(covered_argv, covers=covers)
    try:
        start.info_read, info_write = os.pipe()
        start.child_fds.append(info_write)
        gate_read, start.gate = os.pipe()
        start.child_fds.append(gate_read)
        positions = _slot_positions(start.argv)
        if SECCOMP_SLOT in positions:
            start.message = filter_program()
            if len(start.message) > select.PIPE_BUF:
                raise SandboxStartFailed("the seccomp filter is larger than a pipe takes in one write")
            filled = {INFO_SLOT: info_write, SECCOMP_SLOT: gate_read}
        else:
            start.message, start.held_by_sandbox = GO, (start.gate,)
            filled = {INFO_SLOT: info_write, BLOCK_SLOT: gate_read}
        if STATUS_SLOT in positions:
            start.status_read, filled[STATUS_SLOT] = os.pipe()
            start.child_fds.append(filled[STATUS_SLOT])
        for slot, position in positions.items():
            if slot in filled:
                start.argv[position] = str(filled[slot])
        for position, source in _copy_sources(start.argv, positions[INFO_SLOT]).items():
            start.argv[position] = str(_opened(source, start))
        yield start
    finally:
        start.close()


def _opened(source: Path, start: Start) -> int:
    """source opened for bwrap to copy from, closed in the worker once bwrap has it."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise SandboxStartFailed(f"the sandbox's copy of {source} cannot be read ({exc.strerror})") from exc
    start.child_fds.append(fd)
    return fd


def admit(
    start: Start, bwrap_pid: int, limits: Sequence[tuple[int, int]], cgroup_procs: Sequence[Path], timeout: float
) -> int | None:
    """Give the started sandbox its limits and cgroups, then let it run its command: a pidfd of the sandbox's first
    process, which the caller waits on (wait_sandbox_end) and closes.

    None when the sandbox exited before (bwrap's setup failed: its error is its output). Raises
    SandboxStartFailed, after killing the sandbox, when the limits or cgroups cannot be applied or bwrap never
    says where its sandbox is; the sandbox never ran its command.
    """
    start.release_child_ends()
    pid = _sandbox_pid(start.info_read, time.monotonic() + min(timeout, START_TIMEOUT_SECONDS))
    if pid is None:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        if _parent(pid) != bwrap_pid:
            os.close(pidfd)
            return None  # it exited and its pid is another process's now: nothing of it is left to admit
        for kind, limit in limits:
            new = limited(kind, resource.prlimit(pid, kind), limit)
            if new is not None:
                resource.prlimit(pid, kind, new)
        for procs in cgroup_procs:
            _write_pid(procs, pid)
        start.let_go()
    except (ProcessLookupError, BrokenPipeError):
        os.close(pidfd)
        return None  # the sandbox exited meanwhile: bwrap says why
    except OSError as exc:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.close(pidfd)
        raise SandboxStartFailed(f"the sandbox could not be given its limits or cgroups ({exc})") from exc
    except BaseException:
        os.close(pidfd)
        raise
    return pidfd


def wait_sandbox_end(pidfd: int, seconds: float = END_SECONDS) -> bool:
    """Wait until the sandbox's first process (pidfd) has exited, at most seconds, and close pidfd; whether it did.

    Killing bubblewrap does not end its sandbox at once: the first process dies with its parent, and the kernel
    ends every other process of the namespace before that exit completes. Until then, a process that let go of
    the output pipe may still run and write in the folders the sandbox was shown."""
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    finally:
        os.close(pidfd)


def _write_pid(procs: Path, pid: int) -> None:
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def _parent(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


def _sandbox_pid(info_read: int, deadline: float) -> int | None:
    """The pid bwrap reports once its sandbox exists, or None when bwrap exits without reporting it."""
    poller = select.poll()  # not select(): it refuses descriptors above 1023, and a busy worker has more
    poller.register(info_read, select.POLLIN)
    data = b""
    while len(data) < INFO_LIMIT_BYTES:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise SandboxStartFailed("bwrap did not report its sandbox in time")
        chunk = os.read(info_read, INFO_LIMIT_BYTES)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            pid = json.loads(data).get("child-pid")
            return pid if isinstance(pid, int) else None
    return None
