"""A slot's clean marker: one file kept for the slot's life, rewritten in place, never followed when it is a link."""

from __future__ import annotations

import os
from pathlib import Path

from system.git import git
from workers.worktree import WorktreePool, clean_marker


def test_leases_and_releases_rewrite_one_marker_file(pool: WorktreePool, base_sha: str) -> None:
    with pool.lease(base_sha) as wt:
        assert not clean_marker(wt.path).exists()  # a slot made now has no marker until its release
    marker = clean_marker(wt.path)
    inode = marker.stat().st_ino
    os.link(marker, marker.with_name("watch"))  # a second name: the marker's file stays linked only if kept
    for _ in range(3):
        assert marker.read_text().splitlines()[0] == base_sha
        with pool.lease(base_sha) as wt:
            assert marker.read_bytes().startswith(b"leased:")  # names no commit while leased
            assert marker.stat().st_ino == inode  # the same file: nothing made or deleted per ticket
        assert marker.with_name("watch").read_bytes() == marker.read_bytes()


def test_a_slot_its_holder_never_released_is_cleaned_at_the_next_lease(pool: WorktreePool, base_sha: str) -> None:
    with pool.lease(base_sha):
        pass
    held = pool.lease(base_sha)
    (held.path / "calc.py").write_text("broken\n")
    (held.path / "left.txt").write_text("by a killed holder\n")
    held._lock.close()  # type: ignore[union-attr]  # the holder died: its flock went, release() never ran
    with pool.lease(base_sha) as wt:
        assert wt.path == held.path
        assert not (wt.path / "left.txt").exists()
        assert git("status", "--porcelain", "--ignored", cwd=wt.path) == ""


def test_a_marker_replaced_by_a_link_is_never_followed(tmp_path: Path, pool: WorktreePool, base_sha: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's file\n")
    with pool.lease(base_sha):
        pass
    with pool.lease(base_sha) as wt:
        marker = clean_marker(wt.path)
        marker.unlink()
        marker.symlink_to(outside)  # planted while leased, by what runs without a sandbox as the worker's user
    assert outside.read_text() == "the host's file\n"  # the release did not write through the link
    with pool.lease(base_sha) as wt:
        assert git("status", "--porcelain", cwd=wt.path) == ""
    assert outside.read_text() == "the host's file\n"
    assert not marker.is_symlink()
    assert marker.read_text().splitlines()[0] == base_sha


def test_a_marker_written_before_the_machine_crashed_is_not_trusted(pool: WorktreePool, base_sha: str) -> None:
    with pool.lease(base_sha) as wt:
        pass
    marker = clean_marker(wt.path)
    sha, gitdir, digest, _ = marker.read_text().splitlines()
    (wt.path / "conftest.py").write_text("# the holder's, on disk after the crash; its `leased:` was not\n")
    marker.write_text(f"{sha}\n{gitdir}\n{digest}\n{'0' * 32}\n")  # an earlier boot's
    with pool.lease(base_sha) as wt:
        assert not (wt.path / "conftest.py").exists()


def test_the_older_versions_marker_is_deleted_so_an_older_worker_cannot_trust_it(
    pool: WorktreePool, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        pass
    older = wt.path.with_name(wt.path.name + ".clean")
    older.write_text(f"{base_sha}\n")
    with pool.lease(base_sha):
        assert not older.exists()
