"""Start a confined command (system/sandbox.py) with no launcher process between the worker and bubblewrap.

confine() leaves three descriptor slots in bwrap's options that only this module fills: the seccomp filter
(`--seccomp`), where bwrap reports its sandbox's pid (`--info-fd`), and what the sandbox waits on before it runs
the command (`--block-fd`). Between the two, the worker gives the sandbox's first process the command's
rlimits (prlimit(2)) and moves it into the attempt's cgroups; the command is forked from that process after,
so it starts inside both. bwrap's `--die-with-parent` kills the sandbox with the worker.

A prefix of `setpriv`, `prlimit` and two shells did the same in four more program starts per command (about
3 ms of the machine each time: bench/floor.py). A prefix run any other way fails closed: bwrap refuses the
slots as descriptors, so no command runs without its filter, limits and cgroups.
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

from system.seccomp import filter_file

INFO_SLOT = "<fleet:info-fd>"
BLOCK_SLOT = "<fleet:block-fd>"
SECCOMP_SLOT = "<fleet:seccomp-fd>"
INFO_LIMIT_BYTES = 65_536


class SandboxStartFailed(Exception):
    """The sandbox started but could not be given its limits or cgroups; it was killed before its command ran."""


def is_confined(argv: Sequence[str]) -> bool:
    return INFO_SLOT in argv


@dataclass
class Start:
    """One confined start: the descriptors bwrap gets, and the worker's ends of them."""

    argv: list[str]
    child_fds: list[int] = field(default_factory=list)
    info_read: int = -1
    block_write: int = -1

    def release_child_ends(self) -> None:
        """Once the process started (or failed to), the worker needs only its own ends."""
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
    """argv with its slots filled by fresh descriptors (each start reads its own filter: bwrap reads to the end)."""
    start = Start(list(argv))
    try:
        info_read, info_write = os.pipe()
        start.info_read = info_read
        block_read, block_write = os.pipe()
        start.block_write = block_write
        start.child_fds += [info_write, block_read]
        filled = {INFO_SLOT: info_write, BLOCK_SLOT: block_read}
        if SECCOMP_SLOT in argv:
            seccomp = os.open(filter_file(), os.O_RDONLY | os.O_CLOEXEC)
            start.child_fds.append(seccomp)
            filled[SECCOMP_SLOT] = seccomp
        start.argv = [str(filled[arg]) if arg in filled else arg for arg in argv]
        yield start
    finally:
        start.close()


def admit(start: Start, limits: Sequence[tuple[int, int]], cgroup_procs: Sequence[Path], timeout: float) -> None:
    """Give the started sandbox its limits and cgroups, then let it run its command.

    A sandbox that failed before it reported its pid has exited (its error is its output): nothing to admit.
    Raises SandboxStartFailed, after killing the sandbox, when the limits or cgroups cannot be applied.
    """
    start.release_child_ends()
    pid = _sandbox_pid(start.info_read, time.monotonic() + timeout)
    if pid is None:
        return
    try:
        for kind, limit in limits:
            _lower(pid, kind, limit)
        for procs in cgroup_procs:
            Path(procs).write_text(str(pid))
    except OSError as exc:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # before it is unblocked: closing the pipe alone would let it run
        raise SandboxStartFailed(f"the sandbox could not be given its limits or cgroups ({exc})") from exc
    os.write(start.block_write, b"1")


def _lower(pid: int, kind: int, limit: int) -> None:
    """Lower the soft limit to limit (a hard limit below it stands; no limit of ours leaves it as inherited)."""
    if limit == resource.RLIM_INFINITY:
        return
    soft, hard = resource.prlimit(pid, kind)
    capped = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > capped:
        resource.prlimit(pid, kind, (capped, hard))


def _sandbox_pid(info_read: int, deadline: float) -> int | None:
    """The pid bwrap reports once its sandbox exists, or None when bwrap exits (or hangs) without reporting it."""
    data = b""
    while len(data) < INFO_LIMIT_BYTES:
        if not select.select([info_read], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return None
        chunk = os.read(info_read, INFO_LIMIT_BYTES)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            pid = json.loads(data).get("child-pid")
            return pid if isinstance(pid, int) else None
    return None
