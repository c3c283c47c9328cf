"""A sandbox a dead worker left waiting for ever is ended; a live one, or another home's, never is."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from system.orphans import end_orphaned_sandboxes
from system.sandbox import bwrap_missing

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")


def sandbox(home: Path) -> subprocess.Popen[bytes]:
    """A sandbox of that home's (its worktree bound in), in a process namespace of its own, as a worker starts one."""
    work = home / "worktrees" / "repo-1" / "agent" / "slot-0"
    work.mkdir(parents=True, exist_ok=True)
    argv = ["bwrap", "--unshare-pid", "--ro-bind", "/", "/", "--bind", str(work), str(work), "sleep", "600"]
    return subprocess.Popen(argv, start_new_session=True)


def inner(outer: int) -> int:
    """The sandbox's inner bubblewrap: its outer one's child, the init of its process namespace."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{name}/stat").read_text(errors="replace")
            except OSError:  # a process of another test's that ended since the listing
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == outer:
                return int(name)
        time.sleep(0.02)
    raise AssertionError("no inner bubblewrap")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_inner_process_of_a_sandbox_whose_outer_one_died_is_ended_and_no_other(tmp_path: Path) -> None:
    # A worker killed with -9 in the middle of a merge queue took its outer bubblewrap with it (the parent-death
    # signal) before that one had set the inner one up: the inner one slept for ever, waiting for it.
    home, other = tmp_path / "home", tmp_path / "other-home"
    left, live, others = sandbox(home), sandbox(home), sandbox(other)
    inners: list[int] = []
    try:
        inners += [inner(left.pid), inner(live.pid), inner(others.pid)]
        orphan, kept, elsewhere = inners
        left.kill()
        left.wait()
        others.kill()
        others.wait()
        assert alive(orphan) and alive(elsewhere)
        assert end_orphaned_sandboxes(home) == 1
        deadline = time.monotonic() + 10
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(orphan)
        assert alive(kept) and live.poll() is None  # a live sandbox of the same home
        assert alive(elsewhere)  # another home's: its own worker's to end
    finally:
        for pid in inners:  # started without --die-with-parent: an inner one outlives its outer one
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in (left, live, others):
            process.kill()
            process.wait()
