"""`fleet gc`'s pieces on real git: mirrors pruned only while unused, base commits and fresh objects kept."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from system.git import git
from system.mirror import try_lock
from workers.housekeeping import attempt_folders, object_bytes, prune_mirrors, remove_folders
from workers.worktree import Worktree, WorktreePool


def loose_object(mirror: Path, sha: str) -> Path:
    return mirror / "objects" / sha[:2] / sha[2:]


def write_blob(mirror: Path, data: str, age_seconds: float = 0) -> str:
    sha = git("hash-object", "-w", "--stdin", cwd=mirror, input=data).strip()
    then = time.time() - age_seconds
    os.utime(loose_object(mirror, sha), (then, then))
    return sha


def exists(mirror: Path, sha: str) -> bool:
    return git("cat-file", "--batch-check", cwd=mirror, input=sha + "\n").split()[1] != "missing"


def test_a_mirror_is_pruned_only_while_nobody_uses_it(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    pool = WorktreePool(tmp_path / "worktrees" / "repo-1" / "verify", mirror, size=2)
    old_junk = write_blob(mirror, "a refused attempt's blob\n" * 5000, age_seconds=3600)
    fresh = write_blob(mirror, "written a moment ago, say by an approve about to push it\n")
    tree = git("rev-parse", f"{base_sha}^{{tree}}", cwd=mirror).strip()
    # A ticket's base that no branch reaches (a tag, a force-pushed branch): kept while the ticket exists.
    base = git("commit-tree", tree, "-p", base_sha, "-m", "based on a tag", cwd=mirror).strip()
    orphan = git("commit-tree", tree, "-p", base_sha, "-m", "nobody's", cwd=mirror).strip()
    for sha in (base, orphan):
        os.utime(loose_object(mirror, sha), (time.time() - 3600,) * 2)

    def bases(key: str) -> list[str]:
        assert key == "repo-1"
        return [base, "0" * 40, "not a sha"]

    with pool.lease(base_sha):
        busy = prune_mirrors(mirror.parent, tmp_path / "worktrees", bases)
    assert (busy.removed, busy.skipped) == (0, ["repo-1"])
    assert exists(mirror, old_junk)

    before = object_bytes(mirror)
    done = prune_mirrors(mirror.parent, tmp_path / "worktrees", bases)
    assert (done.removed, done.skipped) == (1, [])
    assert 0 < done.freed <= before
    assert not exists(mirror, old_junk) and not exists(mirror, orphan)
    assert exists(mirror, base) and exists(mirror, fresh) and exists(mirror, base_sha)
    assert git("for-each-ref", cwd=mirror).split()[-1] == "refs/heads/main", "the keep refs are gone"
    with pool.lease(base_sha) as wt:
        assert (wt.path / "calc.py").exists()


def test_a_fetch_in_progress_keeps_its_mirror_from_being_pruned(tmp_path: Path, mirror: Path) -> None:
    junk = write_blob(mirror, "junk\n", age_seconds=3600)
    fetching = try_lock(mirror.with_name("repo-1.lock"))
    assert fetching is not None
    with fetching:
        assert prune_mirrors(mirror.parent, tmp_path / "worktrees", lambda key: ()).skipped == ["repo-1"]
    assert exists(mirror, junk)
    assert prune_mirrors(mirror.parent, tmp_path / "worktrees", lambda key: ()).removed == 1
    assert not exists(mirror, junk)


def test_no_new_worktree_is_made_while_gc_holds_its_mirror(tmp_path: Path, mirror: Path, base_sha: str) -> None:
    pool = WorktreePool(tmp_path / "worktrees" / "repo-1" / "agent", mirror)  # no size: it grows as leases come
    made: list[Worktree] = []
    gc_holding = try_lock(mirror.with_name("repo-1.git.worktrees.lock"))  # as prune_mirrors holds it while git runs
    assert gc_holding is not None
    with gc_holding:
        leasing = threading.Thread(target=lambda: made.append(pool.lease(base_sha)))
        leasing.start()
        leasing.join(timeout=1.0)
        assert leasing.is_alive() and not made, "a worktree was made in a mirror being pruned"
        assert not (pool.root / "slot-0").exists()
    leasing.join(timeout=60)
    [worktree] = made
    assert worktree.path == pool.root / "slot-0" and (worktree.path / "calc.py").exists()
    worktree.release()


def test_attempt_folders_are_found_by_id_and_removed_even_read_only(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    for name in ("1", "22", "not-an-attempt"):
        (attempts / name / "agent").mkdir(parents=True)
    (attempts / "22" / "agent" / "big").write_bytes(b"x" * 100_000)
    (attempts / "22" / "agent").chmod(0o500)
    assert attempt_folders(attempts) == {1: attempts / "1", 22: attempts / "22"}
    done = remove_folders([attempts / "22"])
    assert done.removed == 1 and done.freed >= 100_000
    assert sorted(p.name for p in attempts.iterdir()) == ["1", "not-an-attempt"]
    assert attempt_folders(tmp_path / "none") == {}
    assert prune_mirrors(tmp_path / "no-mirrors", tmp_path / "worktrees", lambda key: ()).removed == 0
