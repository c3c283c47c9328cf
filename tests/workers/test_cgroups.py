"""Per-attempt cgroups with real processes: limits bind, daemons die with the attempt, orphans are swept."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from system.process import run_process
from workers import cgroups
from workers.cgroups import PREFIX, _own_v1_dirs, attempt_cgroup, cgroup_problem

pytestmark = pytest.mark.skipif(cgroup_problem() is not None, reason=f"no cgroups: {cgroup_problem()}")
NO_SUCH_PID = 4_194_305  # above the kernel's largest pid_max


def test_a_daemon_that_left_the_process_group_dies_with_the_attempt(tmp_path: Path) -> None:
    with attempt_cgroup(1, 50, 256) as group:
        assert group is not None
        quiet = "[os.dup2(os.open(os.devnull, os.O_RDWR), fd) for fd in (1, 2)]"  # lets go of the output pipe
        # The parent exits only once its child has left the process group (else the group's end could take it).
        daemon = (
            "import os, time\nleft, told = os.pipe()\nif os.fork():\n    os.read(left, 1)\n"
            f"else:\n    os.setsid(); {quiet}; os.write(told, b'x'); time.sleep(60)\n"
        )
        run_process([sys.executable, "-c", daemon], cwd=tmp_path, env={}, timeout=10, join_cgroups=group.procs_files)
        assert len(group.members()) == 1  # the setsid child outlived its parent and its process group
        assert group.breach() is None
    assert not group.pids_dir.exists() and not group.memory_dir.exists()


def test_the_cgroups_of_a_dead_worker_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_last_sweep", [float("-inf")])  # the first attempt of a worker sweeps
    orphans = [folder / f"{PREFIX}7-{NO_SUCH_PID}-deadbeef" for folder in _own_v1_dirs().values()]
    for orphan in orphans:
        orphan.mkdir()
    with attempt_cgroup(8, 50, 256):
        assert not any(orphan.exists() for orphan in orphans)
