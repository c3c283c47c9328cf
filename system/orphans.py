"""Sandboxes a dead worker left behind. bubblewrap forks its inner process (the sandbox's init) and then sets it up
from outside; when the outer process is killed in between (its worker died, and the parent-death signal took it),
the inner one waits for ever on a signal that never comes, with no child: `--die-with-parent` is set too late there
(containers/bubblewrap#633). Nothing else ends it, so a worker ends those of its home as it starts, and `fleet gc`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def end_orphaned_sandboxes(home: Path) -> int:
    """SIGKILL every orphaned sandbox of this home (orphaned_sandbox); how many were ended."""
    ended = 0
    marker = os.fsencode(home.resolve()) + b"/"
    for name in os.listdir("/proc"):
        if name.isdigit() and orphaned_sandbox(int(name), marker):
            ended += _end(int(name), marker)
    return ended


def orphaned_sandbox(pid: int, marker: bytes) -> bool:
    """Whether pid is a sandbox's inner bubblewrap (the init of its own process namespace) whose outer bubblewrap is
    gone, and whose arguments name a folder under the home (marker: its path and a slash). A live sandbox's inner
    process is its outer one's child; a worker that died leaves it to init or a subreaper."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if os.path.basename(argv[0]) != b"bwrap" or not any(arg.startswith(marker) for arg in argv):
            return False
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        namespaced_pids = fields.get("NSpid", "").split()
        inner = len(namespaced_pids) > 1 and namespaced_pids[-1] == "1"
        parent = Path(f"/proc/{fields['PPid'].strip()}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, KeyError, ValueError):
        return False
    return inner and os.path.basename(parent) != b"bwrap"


def _end(pid: int, marker: bytes) -> int:
    """SIGKILL through a pidfd, once pid is seen again to be that orphan: its number cannot have been reused."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:
        return 0
    try:
        if not orphaned_sandbox(pid, marker):
            return 0
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(handle, signal.SIGKILL)
            return 1
        return 0
    finally:
        os.close(handle)
