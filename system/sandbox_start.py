"""Start a confined command (system/sandbox.py) with no launcher process between the worker and bubblewrap.

confine() leaves three descriptor slots in bwrap's options that only this module fills: the seccomp filter
(`--seccomp`), where bwrap reports its sandbox's pid (`--info-fd`), and what the sandbox waits on before it runs
the command (`--block-fd`). Between the two, the worker gives the sandbox's first process the command's
rlimits (prlimit(2)) and moves it into the attempt's cgroups; the command is forked from that process after,
so it starts inside both.

bwrap goes on when its block descriptor reaches end of file as well as when it reads a byte, so the sandbox holds
a write end of that pipe itself: the pipe never ends, and a sandbox whose worker gave up or died before the byte
waits for ever and never runs its command. Once running, bwrap's `--die-with-parent` ends it with the worker.

A prefix of `setpriv`, `prlimit` and two shells did the same in four more program starts per command (about
3 ms of the machine each time: bench/floor.py). A prefix run any other way fails closed: bwrap refuses the
slots as descriptors, so no command runs without its filter, limits and cgroups.

A worker and its sandboxes run as one user (setting another user's process's limits needs CAP_SYS_RESOURCE).
The limits apply inside the sandbox's own user namespace: RLIMIT_NPROC counts the sandbox's processes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import select
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from system.rlimits import lowered
from system.seccomp import filter_file

INFO_SLOT = "<fleet:info-fd>"
BLOCK_SLOT = "<fleet:block-fd>"
SECCOMP_SLOT = "<fleet:seccomp-fd>"
SLOTS = {"--info-fd": INFO_SLOT, "--block-fd": BLOCK_SLOT, "--seccomp": SECCOMP_SLOT}
INFO_LIMIT_BYTES = 65_536
START_TIMEOUT_SECONDS = 60.0  # bwrap reports its sandbox in milliseconds; a start that takes this long is stuck


class SandboxStartFailed(Exception):
    """The sandbox could not be given its limits or cgroups, or never said where it is; it never ran its command."""


def is_confined(argv: Sequence[str]) -> bool:
    return INFO_SLOT in _slot_positions(argv)


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
    block_write: int = -1  # bwrap holds it too: see the module's docstring

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (*self.child_fds, self.block_write)

    def release_child_ends(self) -> None:
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = []

    def close(self) -> None:
        self.release_child_ends()
        for fd in (self.info_read, self.block_write):
            if fd >= 0:
                os.close(fd)
        self.info_read = self.block_write = -1


@contextlib.contextmanager
def prepared(argv: Sequence[str]) -> Iterator[Start]:
    """argv with its slots filled by fresh descriptors; all of them are closed when the block ends."""
    start = Start(list(argv))
    try:
        start.info_read, info_write = os.pipe()
        block_read, start.block_write = os.pipe()
        start.child_fds += [info_write, block_read]
        filled = {INFO_SLOT: info_write, BLOCK_SLOT: block_read}
        positions = _slot_positions(argv)
        if SECCOMP_SLOT in positions:
            seccomp = _fresh_filter()
            start.child_fds.append(seccomp)
            filled[SECCOMP_SLOT] = seccomp
        for slot, position in positions.items():
            start.argv[position] = str(filled[slot])
        yield start
    finally:
        start.close()


def _fresh_filter() -> int:
    """The seccomp filter, opened anew from this process's own descriptor of it: a new offset for bwrap to read
    from the start, and no path a cleaner of /tmp could take away."""
    return os.open(f"/proc/self/fd/{_filter_descriptor()}", os.O_RDONLY | os.O_CLOEXEC)


@functools.cache
def _filter_descriptor() -> int:
    return os.open(filter_file(), os.O_RDONLY | os.O_CLOEXEC)


def admit(start: Start, limits: Sequence[tuple[int, int]], cgroup_procs: Sequence[Path]) -> bool:
    """Give the started sandbox its limits and cgroups, then let it run its command: True.

    False when the sandbox exited before (bwrap's setup failed: its error is its output). Raises
    SandboxStartFailed, after killing the sandbox, when the limits or cgroups cannot be applied or bwrap never
    says where its sandbox is; the sandbox never ran its command. Few system calls: each gives the interpreter
    lock up, and a worker of a hundred busy slots waits to get it back.
    """
    start.release_child_ends()
    pid = _sandbox_pid(start.info_read, time.monotonic() + START_TIMEOUT_SECONDS)
    if pid is None:
        return False
    try:
        for kind, limit in limits:
            current = resource.prlimit(pid, kind)
            soft = lowered(current, limit)
            if soft is not None:
                resource.prlimit(pid, kind, (soft, current[1]))
        for procs in cgroup_procs:
            _write_pid(procs, pid)
        os.write(start.block_write, b"1")
    except (ProcessLookupError, BrokenPipeError):
        return False  # the sandbox exited meanwhile: bwrap says why
    except OSError as exc:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise SandboxStartFailed(f"the sandbox could not be given its limits or cgroups ({exc})") from exc
    return True


def _write_pid(procs: Path, pid: int) -> None:
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def _sandbox_pid(info_read: int, deadline: float) -> int | None:
    """The pid bwrap reports once its sandbox exists, or None when bwrap exits without reporting it."""
    poller = select.poll()
    poller.register(info_read, select.POLLIN)
    data = b""
    while len(data) < INFO_LIMIT_BYTES:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise SandboxStartFailed(f"bwrap did not report its sandbox within {START_TIMEOUT_SECONDS:g}s")
        chunk = os.read(info_read, INFO_LIMIT_BYTES)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            pid = json.loads(data).get("child-pid")
            return pid if isinstance(pid, int) else None
    return None
