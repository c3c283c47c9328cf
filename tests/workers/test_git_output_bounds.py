"""What git prints about an agent's checkout costs the worker no memory beyond the limits: git's output goes into
memory files capped a little past what the caller reads, so git stops there.

An agent that makes many empty files under a long path adds 0 bytes by the stat pre-check, while git prints
about twice the path per file (the status listing, then `diff --git a/P b/P` per file): without the caps, two
million such files cost the worker tens of gigabytes, whatever FLEET_MAX_DIFF_BYTES says."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from system.environ import environment
from system.files import memory_contents
from system.git import GitOutputTooLarge, git
from workers.worktree import WorktreePool
from workers.worktree_diff import DiffTooLarge

LIMIT = 64 * 1024
MARGIN = 4 * 2**20  # what a bounded write into memory may go past its limit by (one huge page of a write, twice)
FILES = 3000


def _long_folder(root: Path) -> Path:
    deep = root
    for level in range(14):  # 14 names of 250 bytes: each path is ~3.5 KB, well under PATH_MAX
        deep = deep / (chr(ord("a") + level) * 250)
    deep.mkdir(parents=True)
    return deep


def test_many_empty_files_never_make_git_write_far_past_the_diff_limit_into_memory(
    pool: WorktreePool, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        deep = _long_folder(wt.path)
        for n in range(FILES):
            (deep / f"{n:06d}").touch()  # 0 bytes each: the stat pre-check counts nothing
        with pytest.raises(DiffTooLarge) as refused:
            wt.diff_bytes(LIMIT)
    # size: the bytes git wrote into the worker's memory file before the limit was looked at (about 21 MB here,
    # 330 x the limit; it grows with the number of files without any bound).
    assert refused.value.size <= LIMIT + MARGIN, f"git wrote {refused.value.size:,} bytes for a {LIMIT:,} limit"


def test_a_git_command_output_is_bounded(tmp_path: Path) -> None:
    """git() reads any output whole into memory (memory file, then bytes, then str): a hostile repository's blob,
    listing or log is as large as it likes. A bound refuses it once it is over, and git stops writing."""
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(64 * 2**20)
    sha = git("hash-object", "-w", str(big), cwd=tmp_path).strip()
    limit = 2**20
    with pytest.raises(GitOutputTooLarge) as refused:
        git("cat-file", "blob", sha, cwd=tmp_path, limit_bytes=limit)
    assert limit < refused.value.size <= limit + MARGIN


def _git_children() -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        state, parent = rest.split()[:2]
        if int(parent) == os.getpid() and name == "git" and state != "Z":
            found.append((int(entry), state))
    return found


def test_a_git_command_does_not_outlive_an_interrupted_wait(tmp_path: Path) -> None:
    """git is killed and waited for whatever ends its wait: its timeout, a KeyboardInterrupt, a signal handler's
    SystemExit."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            git("-c", "alias.wait=!sleep 3", "wait", cwd=tmp_path, timeout=30)
        left = _git_children()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for pid, _ in left:  # what this test started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"git still runs after its wait was interrupted: {left}"


@pytest.mark.slow
def test_git_output_past_two_gibibytes_is_read_whole(tmp_path: Path) -> None:
    """One pread stops at 2 GiB - 4 KiB (Linux's MAX_RW_COUNT): a larger memory file is read in parts, never cut
    short."""
    lines = Path("/proc/meminfo").read_text().splitlines()
    available = int(next(line for line in lines if line.startswith("MemAvailable")).split()[1]) * 1024
    if available < 10 * 2**30:
        pytest.skip("needs about 5 GiB of memory")
    fd = os.memfd_create("review", os.MFD_CLOEXEC)
    try:
        size = 2**31 + 2**20
        os.ftruncate(fd, size)  # holes: read as zeros
        assert len(memory_contents(fd)) == size
    finally:
        os.close(fd)


@pytest.mark.slow
def test_the_environment_is_read_whole_while_another_thread_changes_it() -> None:
    """environment() decodes the one copy it takes of the table: reading os.environ a second time, key by key,
    raised KeyError out of git() and secret_values() when another thread deleted a variable in between."""
    import sys
    import threading
    import time

    key, value = "FLEET_REVIEW_API_KEY", "sk-review-0123456789abcdef"
    os.environ[key] = value
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.environ.pop(key)
            os.environ[key] = value

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=churn)
    thread.start()
    failures = 0
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not failures:
            try:
                environment()
            except KeyError:
                failures += 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        os.environ.pop(key, None)
    assert failures == 0
