"""A cgroup per agent attempt, so its process count and memory limits bind, and nothing it starts outlives it.

What binds where (Linux):
- cgroup v1 `pids` and `memory` hierarchies writable by the worker (root, or a delegated v1 tree): each attempt
  gets `fleet-attempt-<id>-<nonce>` under the worker's own cgroup in both. `pids.max` caps processes and
  threads together, whatever their user; `memory.limit_in_bytes` makes the kernel's OOM killer stop the
  attempt's biggest process instead of the worker's. `pids.events` and `memory.oom_control` say afterwards
  whether a limit was reached, and the attempt ends with that reason. The group's name carries the worker's
  pid, so the groups of a worker killed with -9 are removed by the next attempt on the machine.
- cgroup v2 is not used: a delegated v2 subtree needs the worker to move itself into a leaf first (the "no
  internal processes" rule), and no machine this was built on had v2 controllers to test it with.
- Neither available (the usual non-root container): only the rlimits of system/process.py apply. RLIMIT_AS
  binds per process (a single memory hog fails its allocation); RLIMIT_NPROC counts, in a sandbox, the
  processes of the sandbox's own user namespace (system/sandbox_start.py) and, without one, every process of
  the worker's user (the worker's own included), and never binds root; so a fork bomb is bounded by that, the
  time limit, and the sandbox's PID namespace, which ends every process of the attempt with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory")
KILL_WAIT_SECONDS = 5.0
KILL_POLL_SECONDS = 0.02
UNLIMITED_PROCESSES = 4_194_304  # the kernel's own pid_max ceiling
UNLIMITED_BYTES = 2**62
PREFIX = "fleet-attempt-"


@dataclass(frozen=True)
class AttemptCgroup:
    """One attempt's cgroups (one per v1 controller) and the limits written into them."""

    pids_dir: Path
    memory_dir: Path
    max_processes: int
    memory_bytes: int

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """The files a child writes its pid into to join (run_process's join_cgroups)."""
        return (self.pids_dir / "cgroup.procs", self.memory_dir / "cgroup.procs")

    def breach(self) -> str | None:
        """Which limit the attempt reached, as the attempt's error; None when it stayed within both."""
        if _counter(self.memory_dir / "memory.oom_control", "oom_kill") > 0:
            return f"agent ran out of memory (limit {self.memory_bytes // 2**20} MiB); its process was killed"
        if _counter(self.pids_dir / "pids.events", "max") > 0:
            return f"agent reached its limit of {self.max_processes} processes"
        return None

    def members(self) -> list[int]:
        """Pids still in the attempt's cgroup."""
        try:
            return [int(line) for line in (self.pids_dir / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (daemons that left the process group included) until none is left."""
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while (pids := self.members()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(KILL_POLL_SECONDS)

    def remove(self) -> None:
        """Kill what is left and delete both cgroups (an empty cgroup is removed with rmdir)."""
        self.kill_all()
        for folder in (self.pids_dir, self.memory_dir):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _counter(path: Path, name: str) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


@lru_cache(maxsize=1)
def _own_v1_dirs() -> dict[str, Path]:
    """Each v1 controller's folder of this process's cgroup, from /proc/self/cgroup (`N:ctrl,ctrl:/path`)."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in CONTROLLERS:
                found[controller] = V1_ROOT / controller / path.lstrip("/")
    return found


@lru_cache(maxsize=1)
def cgroup_problem() -> str | None:
    """None when this worker can create v1 pids and memory cgroups; otherwise why not (checked once)."""
    dirs = _own_v1_dirs()
    missing = [c for c in CONTROLLERS if c not in dirs or not dirs[c].is_dir()]
    if missing:
        return f"no cgroup v1 {' and '.join(missing)} hierarchy"
    probe = f"fleet-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    for controller in CONTROLLERS:
        try:
            (dirs[controller] / probe).mkdir()
            (dirs[controller] / probe).rmdir()
        except OSError as exc:
            return f"cannot create a {controller} cgroup: {exc.strerror or exc}"
    return None


ORPHAN_SWEEP_SECONDS = 60.0  # a hundred slots starting at once list the hierarchy once, not a hundred times
_last_sweep = [float("-inf")]


def _remove_orphans() -> None:
    """Remove the cgroups of workers that died (kill -9) before removing their own: `...-<worker pid>-<nonce>`.

    At most once a minute per worker: a dead worker's groups hold only its dead attempts' leftovers."""
    now = time.monotonic()
    if now - _last_sweep[0] < ORPHAN_SWEEP_SECONDS:
        return
    _last_sweep[0] = now
    for controller, folder in _own_v1_dirs().items():
        if controller not in CONTROLLERS:
            continue
        for group in folder.glob(f"{PREFIX}*"):
            owner = group.name.rsplit("-", 2)[-2]
            if owner.isdigit() and int(owner) != os.getpid() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    group.rmdir()  # fails, harmlessly, while a process is still inside


def _create(name: str, max_processes: int, memory_bytes: int) -> AttemptCgroup:
    dirs = _own_v1_dirs()
    group = AttemptCgroup(dirs["pids"] / name, dirs["memory"] / name, max_processes, memory_bytes)
    group.pids_dir.mkdir()
    try:
        group.memory_dir.mkdir()
        (group.pids_dir / "pids.max").write_text(str(max_processes))
        (group.memory_dir / "memory.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        group.remove()
        raise
    return group


@contextlib.contextmanager
def attempt_cgroup(attempt_id: int, max_processes: int, memory_mb: int) -> Iterator[AttemptCgroup | None]:
    """The attempt's cgroup for the block, then everything in it killed and the cgroup removed.

    Yields None when cgroups are unavailable (cgroup_problem() says why) or both limits are 0 (off).
    """
    if (max_processes <= 0 and memory_mb <= 0) or cgroup_problem() is not None:
        yield None
        return
    processes = max_processes if max_processes > 0 else UNLIMITED_PROCESSES
    memory = memory_mb * 2**20 if memory_mb > 0 else UNLIMITED_BYTES
    _remove_orphans()
    group = _create(f"{PREFIX}{attempt_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}", processes, memory)
    try:
        yield group
    finally:
        group.remove()
