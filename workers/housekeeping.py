"""`fleet gc` on a worker host: attempt folders nobody needs any more, unreachable objects in the mirrors, and
(on request) the stored transcripts, diffs and test output of old settled tickets' attempts.

An attempt's folder is removed unless the attempt is waiting or running: a worker removes it when the attempt
finishes, so the ones found were left by a worker that died, or by a failure between the two.

A mirror is pruned only while nobody uses it: gc takes, without waiting, every lock a worker takes to use it (the
fetch lock, the lock for creating worktrees, and each worktree slot's lock, agent and verify pools alike) and
holds them all while git prunes, so no lease, fetch or new slot starts meanwhile; a mirror with any of them taken
is skipped and named. Every ticket's base commit is kept (a ticket based on a tag, or on a commit its branch no
longer reaches, still needs it), and so is anything written in the last PRUNE_GRACE: `fleet review approve`
writes its commit into the mirror without a lock, just before pushing it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from db import queries
from db.engine import Database
from db.models import utcnow
from system.files import disk_usage, remove_tree
from system.git import git
from system.mirror import HEX_SHA, try_lock
from system.orphans import end_orphaned_sandboxes
from system.settings import Settings
from workers.journal import AGENT, VERIFY, OutcomeJournal
from workers.spares import remove_stale
from workers.worktree import SLOT_PREFIX

PRUNE_GRACE = "10.minutes.ago"
KEEP_REFS = "refs/fleet-gc-keep/"
ATTEMPT_FOLDER = re.compile(r"[0-9]+")
SPARE_IDLE_SECONDS = 3600.0  # a spare untouched this long is left over, even if a process of its pid runs


@dataclass
class Collected:
    """What one kind of clean-up removed, and what it left because it was in use."""

    removed: int = 0
    freed: int = 0
    skipped: list[str] = field(default_factory=list)


def collect(db: Database, settings: Settings, older_than_days: float | None = None) -> list[str]:
    """Remove what finished attempts left on this host (and, given days, their old stored text); one line per kind."""
    folders = attempt_folders(settings.attempts_dir)
    with db.session() as s:
        busy = queries.open_attempt_ids(s, folders)
        bases = {f"repo-{repo_id}": shas for repo_id, shas in queries.base_commits(s).items()}
    removed = remove_folders(path for attempt_id, path in folders.items() if attempt_id not in busy)
    remove_stale(settings.attempts_dir, SPARE_IDLE_SECONDS)
    _drop_journal_entries(settings.home.resolve() / "outcomes", db)
    pruned = prune_mirrors(settings.mirrors_dir, settings.worktrees_dir, lambda key: bases.get(key, ()))
    lines = [
        f"attempt folders: removed {removed.removed} ({removed.freed:,} bytes)",
        f"mirrors: pruned {pruned.removed} ({pruned.freed:,} bytes freed)"
        + (f"; skipped, in use: {', '.join(pruned.skipped)}" if pruned.skipped else ""),
    ]
    if older_than_days is not None:
        before = utcnow() - timedelta(days=older_than_days)
        with db.session() as s:
            count, size = queries.clear_attempt_text(s, before)
            sent = queries.delete_sent_notifications(s, before)
        lines.append(
            f"stored attempt text: cleared {count} attempt{'s' if count != 1 else ''} finished over"
            f" {older_than_days:g} days ago ({size:,} bytes)"
        )
        lines.append(f"notifications: deleted {sent} sent over {older_than_days:g} days ago")
    lines.append(f"sandboxes dead workers left: ended {end_orphaned_sandboxes(settings.home)}")
    return lines


def _drop_journal_entries(root: Path, db: Database) -> None:
    """Outcome journal entries of attempts no longer waiting or running (a worker drops them as it concludes), and
    the spares of workers that stopped."""
    journal = OutcomeJournal(root, spares=0)  # gc stops soon: what it drops is deleted
    ids = {attempt_id for kind in (AGENT, VERIFY) for attempt_id in journal.attempt_ids(kind)}
    with db.session() as s:
        busy = queries.open_attempt_ids(s, ids)
    for attempt_id in ids - busy:
        journal.drop(attempt_id)
    remove_stale(root, SPARE_IDLE_SECONDS)


def attempt_folders(attempts_dir: Path) -> dict[int, Path]:
    """The attempt folders under attempts_dir, by attempt id."""
    if not attempts_dir.is_dir():
        return {}
    return {int(p.name): p for p in attempts_dir.iterdir() if ATTEMPT_FOLDER.fullmatch(p.name) and p.is_dir()}


def remove_folders(folders: Iterable[Path]) -> Collected:
    """Delete the folders (read-only ones an agent left included); counts them and the bytes they held."""
    done = Collected()
    for folder in folders:
        done.freed += disk_usage(folder)
        remove_tree(folder)
        done.removed += 1
    return done


def prune_mirrors(mirrors_dir: Path, worktrees_dir: Path, bases: Callable[[str], Iterable[str]]) -> Collected:
    """Drop the unreachable objects of every mirror nobody is using; bases(key) names the commits to keep."""
    done = Collected()
    for mirror in sorted(mirrors_dir.glob("*.git")) if mirrors_dir.is_dir() else []:
        key = mirror.name.removesuffix(".git")
        with _unused(mirror, worktrees_dir / key) as free:
            if not free:
                done.skipped.append(key)
                continue
            before = object_bytes(mirror)
            _prune(mirror, bases(key))
            done.freed += max(0, before - object_bytes(mirror))
            done.removed += 1
    return done


def object_bytes(repo: Path) -> int:
    """Bytes of the repository's object store: loose objects, packs and garbage, as `git count-objects -v`."""
    counts = dict(line.split(": ", 1) for line in git("count-objects", "-v", cwd=repo).splitlines())
    return 1024 * sum(int(counts.get(key, 0)) for key in ("size", "size-pack", "size-garbage"))


@contextlib.contextmanager
def _unused(mirror: Path, pools: Path) -> Iterator[bool]:
    """Holds every lock a worker takes to use mirror; yields False (holding none) when any is taken."""
    paths = [
        mirror.with_name(mirror.name.removesuffix(".git") + ".lock"),
        mirror.with_name(mirror.name + ".worktrees.lock"),
    ]
    paths += sorted(pools.glob(f"*/{SLOT_PREFIX}*.lock"))
    held: list[IO[bytes]] = []
    try:
        for path in paths:
            handle = try_lock(path)
            if handle is None:
                break
            held.append(handle)
        yield len(held) == len(paths)
    finally:
        for handle in held:
            handle.close()


def _prune(mirror: Path, bases: Iterable[str]) -> None:
    """`git gc --prune`, with a ref on each base commit the mirror holds for the time it runs."""
    _drop_keep_refs(mirror)  # left by a gc that was killed
    wanted = sorted({sha for sha in bases if HEX_SHA.fullmatch(sha)})
    found = git("cat-file", "--batch-check", cwd=mirror, input="".join(f"{sha}\n" for sha in wanted))
    commits = [line.split()[0] for line in found.splitlines() if line.split()[1:2] == ["commit"]]
    git("update-ref", "--stdin", cwd=mirror, input="".join(f"create {KEEP_REFS}{sha} {sha}\n" for sha in commits))
    try:
        git("gc", "--quiet", f"--prune={PRUNE_GRACE}", cwd=mirror)
    finally:
        _drop_keep_refs(mirror)


def _drop_keep_refs(mirror: Path) -> None:
    refs = git("for-each-ref", "--format=delete %(refname)", KEEP_REFS, cwd=mirror)
    if refs:
        git("update-ref", "--stdin", cwd=mirror, input=refs)
