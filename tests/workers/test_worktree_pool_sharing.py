"""The worktree pool across threads and processes: a size that caps it or none, waiting leases, a killed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from workers.worktree import PoolExhausted, WorktreePool


def test_size_is_bounded(pool: WorktreePool, base_sha: str) -> None:
    held = [pool.lease(base_sha), pool.lease(base_sha)]
    assert {wt.path.name for wt in held} == {"slot-0", "slot-1"}
    started = time.monotonic()
    with pytest.raises(PoolExhausted, match="2 worktree slots"):
        pool.lease(base_sha)
    assert 0.4 <= time.monotonic() - started < 3
    held[1].release()
    with pool.lease(base_sha) as wt:
        assert wt.path.name == "slot-1"
    held[0].release()


def test_a_waiting_lease_gets_the_released_slot(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    pool = WorktreePool(tmp_path / "one", mirror, size=1, wait_seconds=10)
    held = pool.lease(base_sha)
    threading.Timer(0.5, held.release).start()
    with pool.lease(base_sha) as wt:
        assert wt.path == held.path


HOLDER = """
import sys, time
from pathlib import Path
from system.mirror import ensure_mirror
from workers.worktree import WorktreePool
size, leases = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 4 else (1, 1)
pool = WorktreePool(Path(sys.argv[1]), Path(sys.argv[2]), size=size or None, wait_seconds=5)
held = [pool.lease(sys.argv[3]) for _ in range(leases)]
(held[0].path / "from-the-dead.txt").write_text("x")
print("leased", flush=True)
time.sleep(600)
"""


def _holder(root: Path, mirror: Path, sha: str, size: int = 1, leases: int = 1) -> subprocess.Popen[str]:
    """Another process holding leases of the pool at root (size 0: a pool without a size)."""
    args = [sys.executable, "-c", textwrap.dedent(HOLDER), str(root), str(mirror), sha, str(size), str(leases)]
    holder = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "leased"
    return holder


class CountedPool(WorktreePool):
    """Counts the slot lock files it tries."""

    tries = 0

    def _try_lock(self, n: int) -> IO[bytes] | None:
        self.tries += 1
        return super()._try_lock(n)


def test_a_pool_without_a_size_serves_every_process_of_the_host_at_once(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    root = tmp_path / "host"
    holder = _holder(root, mirror, base_sha, size=0, leases=2)  # another worker process, its two slots busy
    try:
        pool = WorktreePool(root, mirror, wait_seconds=0.3)
        held = [pool.lease(base_sha) for _ in range(3)]  # a size of this process's slots would make these wait
        assert sorted(wt.path.name for wt in held) == ["slot-2", "slot-3", "slot-4"]
        for wt in held:
            wt.release()
        with pool.lease(base_sha) as wt:
            assert wt.path.name == "slot-2"  # an existing checkout first, not a new one
    finally:
        holder.kill()
        holder.wait()


def test_waiting_leases_look_at_the_lock_files_in_turn(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    root = tmp_path / "full"
    holder = _holder(root, mirror, base_sha, size=2, leases=2)
    try:
        pool = CountedPool(root, mirror, size=2, wait_seconds=0.6)
        refused: list[PoolExhausted] = []

        def wait() -> None:
            with pytest.raises(PoolExhausted) as caught:
                pool.lease(base_sha)
            refused.append(caught.value)

        waiters = [threading.Thread(target=wait) for _ in range(16)]
        for thread in waiters:
            thread.start()
        for thread in waiters:
            thread.join()
        assert len(refused) == 16
        # Each waiter looking for itself tried both lock files at least once: 32 tries at the very least.
        assert pool.tries <= 2 * 8, pool.tries
    finally:
        holder.kill()
        holder.wait()


def test_a_slot_held_by_a_killed_process_is_reused(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    root = tmp_path / "crash"
    holder = _holder(root, mirror, base_sha)
    pool = WorktreePool(root, mirror, size=1, wait_seconds=0.3)
    with pytest.raises(PoolExhausted):
        pool.lease(base_sha)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with pool.lease(base_sha) as wt:
        assert wt.path == root / "slot-0"
        assert not (wt.path / "from-the-dead.txt").exists()


def test_a_process_reuses_the_slots_another_made_before_it_makes_one(
    tmp_path: Path, mirror: Path, base_sha: str
) -> None:
    mine, theirs = WorktreePool(tmp_path / "pool", mirror), WorktreePool(tmp_path / "pool", mirror)
    mine.lease(base_sha).release()  # this process has seen slot-0 only
    made = [theirs.lease(base_sha) for _ in range(3)]  # another process makes slot-0 to slot-2
    for worktree in made:
        worktree.release()
    first, second, third = (mine.lease(base_sha) for _ in range(3))
    assert [wt.path.name for wt in (first, second, third)] == ["slot-0", "slot-1", "slot-2"]
    assert sorted(p.name for p in (tmp_path / "pool").iterdir() if p.is_dir()) == ["slot-0", "slot-1", "slot-2"]
    with mine.lease(base_sha) as fourth:  # every slot busy: now one is made
        assert fourth.path.name == "slot-3"
    for worktree in (first, second, third):
        worktree.release()
    assert mine.prune(keep=2) == 2
    with mine.lease(base_sha) as again, mine.lease(base_sha) as beside:
        assert [again.path.name, beside.path.name] == ["slot-0", "slot-1"]
