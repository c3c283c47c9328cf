"""A bounded pool of reusable, detached git worktrees of one mirror; a slot is held by an flock on its lock file."""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from system.files import disk_usage, link_on_the_way, remove_tree, write_over
from system.git import GitError, checkout_git, git
from system.mirror import HEX_SHA, exclusive_lock, shared_lock, try_lock
from workers.worktree_diff import ESC, CheckoutDiff, DiffHoldsNul, DiffNotUtf8, WorktreeError, explicit
from workers.worktree_make import LOCK_REASON, AlreadyRegistered, make_worktree, remove_unfinished

POLL_SECONDS = 0.2  # how often a process looks for a slot another process freed, while its slots wait
SLOT_PREFIX = "slot-"
# `git worktree prune` drops any worktree whose `.git` file is missing, even for a moment: an unsandboxed agent's
# `.git` is swapped out and back during its run (workers/agent_git.py pointed_at), and the agent may delete it.
# A prune by another slot's creation then took the leased slot's git dir out of the mirror. So every slot is
# locked in git from its creation, and unlocked only by the pool, holding the slot's flock, to delete it.
LEASED = b"leased:"  # written over the start of a slot's clean marker while the slot is leased


class PoolExhausted(WorktreeError):
    """Every slot of a pool of bounded size stayed busy for the whole wait."""

    def __init__(self, root: Path, size: int, waited: float) -> None:
        self.root = root
        self.size = size
        self.waited = waited
        super().__init__(f"all {size} worktree slots under {root} stayed busy for {waited:g}s")


class SlotLock:
    """A slot's flock, which its pool also remembers, so this process never tries a slot it already holds."""

    def __init__(self, handle: IO[bytes], forget: Callable[[], None]) -> None:
        self._handle, self._forget = handle, forget

    def close(self) -> None:
        self._handle.close()  # closing the descriptor releases the flock
        self._forget()


class Worktree:
    """One leased slot: a detached checkout of base_sha that only its holder uses until release()."""

    def __init__(self, path: Path, base_sha: str, mirror: Path, lock: SlotLock, gitdir: Path) -> None:
        self.path = path
        self.base_sha = base_sha
        self.mirror = mirror
        self._lock: SlotLock | None = lock
        # Found owned by mirror at lease time; every later git call names it and the work tree explicitly, so
        # a .git pointer or core.worktree rewritten during the lease cannot redirect Fleet's own git commands.
        self._gitdir = gitdir
        self._pointer = _pointer(path, gitdir)

    def __enter__(self) -> Worktree:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def gitdir(self) -> Path:
        """The checkout's git dir in the mirror, as verified when the slot was leased."""
        return self._gitdir

    @property
    def released(self) -> bool:
        """True once release() has run."""
        return self._lock is None

    def diff_bytes(self, limit: int | None = None) -> bytes:
        """The exact patch from base_sha to the checkout (workers/worktree_diff.py); the mirror is never written."""
        if self._lock is None:
            raise WorktreeError(f"{self.path} was already released")
        if _pointer(self.path, self._gitdir) != self._pointer:
            raise WorktreeError(f"{self.path} no longer belongs to {self.mirror}; its .git was tampered with")
        return CheckoutDiff(self.path, self._gitdir, self.mirror, self.base_sha).patch(limit)

    def diff(self, limit: int | None = None) -> str:
        """diff_bytes() as text: DiffHoldsNul when a text file of it holds a NUL byte, DiffNotUtf8 when a line is
        not UTF-8."""
        patch = self.diff_bytes(limit)
        if 0 in patch:
            raise DiffHoldsNul(patch)
        try:
            return patch.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DiffNotUtf8(patch, exc.start) from None

    def release(self) -> None:
        """Clean the checkout and free the slot; harmless when called again."""
        if self._lock is None:
            return
        try:
            clean_checkout(self.path, self._gitdir)
            empty_submodule_folders(self.path, submodule_folders(self.mirror, self.base_sha))
            if _pointer(self.path, self._gitdir) == self._pointer:  # else the next lease repairs the slot
                mark = f"{self.base_sha}\n{self._gitdir}\n{_digest(self._pointer)}\n{boot_id()}\n"
                write_over(clean_marker(self.path), mark.encode(errors=ESC))  # kept for the slot's life
        except (GitError, OSError):
            pass  # the next lease finds the slot dirty or broken and repairs or recreates it
        finally:
            self._lock.close()
            self._lock = None


class WorktreePool:
    """Worktrees of mirror under root, reused across leases and across processes.

    With a size, at most that many (a lease waits for a free one); without, as many as are leased at once: the
    slots of every worker process of the host bound them, and no process needs to know the others' slots.
    """

    def __init__(self, root: Path, mirror: Path, size: int | None = None, wait_seconds: float = 600.0) -> None:
        if size is not None and size < 1:
            raise ValueError("a worktree pool needs at least one slot")
        self.root = root.resolve()
        self.mirror = mirror.resolve()
        self.size = size
        self.wait_seconds = wait_seconds
        self._create_lock = self.mirror.with_name(self.mirror.name + ".worktrees.lock")
        self._held: set[int] = set()  # slots this process holds: other threads skip them without a syscall
        self._freed = threading.Condition()  # guards _held; notified when this process releases a slot
        self._looked_at = 0.0  # when a look found every slot busy, so that waiters look once per POLL_SECONDS
        self._releases = 0  # slots this process released that no waiter has looked for yet
        self._seen: list[int] = []  # the slot numbers this process saw or made, in order; guarded by _freed

    def lease(self, base_sha: str) -> Worktree:
        """A clean detached checkout of base_sha; waits for a free slot, then raises PoolExhausted."""
        if not HEX_SHA.fullmatch(base_sha):
            raise WorktreeError(f"not a commit id: {base_sha!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        path, lock = self._wait_for_slot(time.monotonic() + self.wait_seconds)
        try:
            gitdir = self._prepare(path, base_sha)
        except BaseException:
            lock.close()
            raise
        return Worktree(path, base_sha, self.mirror, lock, gitdir)

    def disk_usage(self) -> int:
        """Bytes on disk used by the pool's slots."""
        return disk_usage(self.root)

    def prune(self, keep: int) -> int:
        """Delete idle slot directories beyond the first keep; busy slots are never touched. Returns how many."""
        slots = self._existing_slots()
        removed = 0
        for n in reversed(slots):
            if len(slots) - removed <= keep:
                break
            lock = self._try_lock(n)
            if lock is None:
                continue
            with lock:
                self._remove(self._slot_path(n))
            with self._freed:
                self._seen = [m for m in self._seen if m != n]
            removed += 1
        return removed

    def _slot_path(self, n: int) -> Path:
        return self.root / f"{SLOT_PREFIX}{n}"

    def _existing_slots(self) -> list[int]:
        with os.scandir(self.root) as entries:  # one directory read; no stat per slot
            suffixes = [e.name[len(SLOT_PREFIX) :] for e in entries if e.name.startswith(SLOT_PREFIX) and e.is_dir()]
        return sorted(int(suffix) for suffix in suffixes if suffix.isdigit())

    def _try_lock(self, n: int) -> IO[bytes] | None:
        return try_lock(self.root / f"{SLOT_PREFIX}{n}.lock")

    def _wait_for_slot(self, deadline: float) -> tuple[Path, SlotLock]:
        """A free slot, locked. A process's waiters look at the lock files one at a time: at once when one of its
        own slots is released, else once per POLL_SECONDS (for slots other processes release)."""
        with self._freed:
            while True:
                now = time.monotonic()
                if self._releases or now - self._looked_at >= POLL_SECONDS:
                    self._releases = max(0, self._releases - 1)
                    if (taken := self._take_free_slot()) is not None:
                        return taken
                    self._looked_at, self._releases = time.monotonic(), 0  # this look saw every release so far
                if now >= deadline:
                    raise PoolExhausted(self.root, self.size or 0, self.wait_seconds)
                self._freed.wait(min(POLL_SECONDS, deadline - now))

    def _take_free_slot(self) -> tuple[Path, SlotLock] | None:
        """Locks the first free slot, existing ones first (reusing a checkout beats creating one); the caller holds
        _freed. The slots this process saw are tried before the folder is read again, for those other processes
        made. Without a size, a slot number nobody holds is always found: only leases hold them."""
        taken = self._lock_first(self._seen)
        if taken is None:
            self._seen = [n for n in self._existing_slots() if self.size is None or n < self.size]
            numbers = range(self.size) if self.size is not None else itertools.count()
            made = set(self._seen)
            taken = self._lock_first(itertools.chain(self._seen, (n for n in numbers if n not in made)))
        return taken

    def _lock_first(self, numbers: Iterable[int]) -> tuple[Path, SlotLock] | None:
        """The first of numbers that no thread of this process holds and whose flock is free, locked."""
        for n in numbers:
            if n in self._held:
                continue
            lock = self._try_lock(n)
            if lock is not None:
                self._held.add(n)
                if n not in self._seen:
                    bisect.insort(self._seen, n)
                return self._slot_path(n), SlotLock(lock, functools.partial(self._forget, n))
        return None

    def _forget(self, n: int) -> None:
        with self._freed:
            self._held.discard(n)
            self._releases += 1
            self._freed.notify()

    def _prepare(self, path: Path, sha: str) -> Path:
        """Make the slot at path a clean checkout of sha; returns its git dir."""
        gitdir = self._reuse(path, sha)
        if gitdir is not None:
            return gitdir
        never_made = not path.exists() and not clean_marker(path).exists()
        remove_tree(path)
        try:
            if never_made:  # beside other creations; never while `fleet gc` holds the mirror (housekeeping.py)
                with shared_lock(self._create_lock), contextlib.suppress(AlreadyRegistered, GitError):
                    return make_worktree(self.mirror, path, sha)
            with exclusive_lock(self._create_lock):  # made before, maybe deleted by hand: its registration goes
                self._unregister(path)
                return make_worktree(self.mirror, path, sha)
        except (GitError, AlreadyRegistered, OSError) as exc:
            reason = exc.stderr if isinstance(exc, GitError) and exc.stderr else exc
            raise WorktreeError(f"cannot check out {sha} in {path}: {reason}") from exc

    def _reuse(self, path: Path, sha: str) -> Path | None:
        """Reset an existing slot to sha and return its git dir; None when it is missing, foreign or broken."""
        clean_at, known = released_clean(path)
        mark_leased(path)  # from here on the slot is ours to dirty
        older_marker(path).unlink(missing_ok=True)  # a worker of the version before would trust it
        gitdir = known or owning_gitdir(path, self.mirror)
        if gitdir is None:
            return None
        try:
            if not (gitdir / "locked").exists():  # a slot made before slots were locked
                git("worktree", "lock", f"--reason={LOCK_REASON}", str(path), cwd=self.mirror)
            if clean_at == sha:
                return gitdir  # released clean at this very commit: nothing to do
            Path(gitdir, "index.lock").unlink(missing_ok=True)  # left by a killed agent; we hold the slot
            checkout_git(*explicit(path, gitdir), "checkout", "--detach", "--force", "--quiet", sha, "--", cwd=path)
            if clean_at is None:  # not released cleanly (a killed holder): untracked and ignored files may remain
                clean_checkout(path, gitdir)
        except (GitError, OSError):
            return None
        return gitdir

    def _remove(self, path: Path) -> None:
        remove_tree(path)
        clean_marker(path).unlink(missing_ok=True)
        older_marker(path).unlink(missing_ok=True)
        with exclusive_lock(self._create_lock):
            self._unregister(path)

    def _unregister(self, path: Path) -> None:
        """Forget the slot at path, whose flock the caller holds, and every worktree of the mirror that is gone.

        The caller holds the creation lock. The slot's git lock goes first, so prune sees it as any other.
        """
        with contextlib.suppress(GitError):  # never made, made before slots were locked, or already forgotten
            git("worktree", "unlock", str(path), cwd=self.mirror)
        remove_unfinished(self.mirror)
        git("worktree", "prune", cwd=self.mirror)


def owning_gitdir(path: Path, mirror: Path) -> Path | None:
    """The git dir of the worktree at path if it is a worktree of mirror rooted at path, else None."""
    if not (path / ".git").is_file():
        return None
    flags = ("--path-format=absolute", "--git-common-dir", "--git-dir", "--show-toplevel")
    try:
        common, gitdir, top = git("rev-parse", *flags, cwd=path).splitlines()[:3]
    except (GitError, OSError, ValueError):
        return None
    # A rewritten .git pointer or core.worktree must never make us reset, clean or stage someone else's files.
    if Path(common).resolve() != mirror.resolve() or Path(top).resolve() != path.resolve():
        return None
    return Path(gitdir)


def clean_marker(path: Path) -> Path:
    """Next to a slot: the commit its release left it clean at, or nothing while it is leased or was left dirty.

    Its name is new since the marker is kept and written over: a worker of the version before, on the same host,
    would read a leased slot's marker as clean, and deletes no `.clean` marker it does not find."""
    return path.with_name(path.name + ".released")


def older_marker(path: Path) -> Path:
    """The clean marker of the version before, deleted when its slot is leased or removed."""
    return path.with_name(path.name + ".clean")


@functools.cache
def boot_id() -> str:
    """This boot's id: a marker written before a crash of the machine names another, and is not trusted (what the
    slot's holder wrote may have reached the disk, and `leased:` over the marker not)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def mark_leased(path: Path) -> None:
    """Mark the slot at path not clean: the marker's commit is overwritten so that it names none (a marker that is
    not a plain file is removed); without a marker, the slot is not known clean anyway."""
    try:
        marker = os.open(clean_marker(path), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError:
        remove_tree(clean_marker(path))
        return
    try:
        os.pwrite(marker, LEASED, 0)
    finally:
        os.close(marker)


def clean_checkout(path: Path, gitdir: Path) -> None:
    """Drop every change, untracked and ignored file in the checkout at path, whose git dir is gitdir."""
    checkout_git(*explicit(path, gitdir), "reset", "--hard", "--quiet", cwd=path)
    checkout_git(*explicit(path, gitdir), "clean", "-ffdxq", cwd=path)


@functools.lru_cache(maxsize=256)
def submodule_folders(mirror: Path, sha: str) -> tuple[str, ...]:
    """The submodules' folders in the tree at sha (read once per commit and process)."""
    listing = git("ls-tree", "-r", "-z", "--full-tree", sha, cwd=mirror, errors=ESC)
    return tuple(entry.split("\t", 1)[1] for entry in listing.split("\0") if entry.startswith("160000 "))


def empty_submodule_folders(path: Path, folders: Iterable[str]) -> None:
    """Empty each submodule's folder in the checkout at path: git's reset and clean leave what is in one (an agent's
    or a test run's files, a git dir of its making) for the slot's next lease, another ticket's."""
    for folder in folders:
        if link_on_the_way(path, folder) is None:  # the folder itself goes whatever it is, a link included
            remove_tree(path / folder)
            (path / folder).mkdir()


def released_clean(path: Path) -> tuple[str | None, Path | None]:
    """The commit the slot at path was released clean at, and its git dir, from the clean marker; the git dir only
    while the slot's .git and commondir files are still those its release checked (else git is asked again)."""
    try:
        sha, gitdir, digest, boot = clean_marker(path).read_text(errors=ESC).splitlines()[:4]
    except (OSError, ValueError):  # no marker, or a torn one
        return None, None
    if not HEX_SHA.fullmatch(sha) or boot != boot_id():  # leased since (mark_leased), or before a crash
        return None, None
    pointer = _pointer(path, Path(gitdir))
    return sha, Path(gitdir) if pointer is not None and _digest(pointer) == digest else None


def _digest(pointer: tuple[bytes, bytes] | None) -> str:
    return hashlib.sha256(repr(pointer).encode()).hexdigest()


def _pointer(path: Path, gitdir: Path) -> tuple[bytes, bytes] | None:
    """What ties the checkout to its git dir and the git dir to the mirror: the .git file and the commondir file."""
    try:
        return (path / ".git").read_bytes(), (gitdir / "commondir").read_bytes()
    except OSError:
        return None
