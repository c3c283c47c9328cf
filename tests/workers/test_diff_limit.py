"""Taking a diff: bounded by a size limit, measured before git reads the files, and never written to the mirror."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from system.git import git
from workers.worktree import WorktreePool
from workers.worktree_diff import DiffTooLarge

LIMIT = 2**20


def objects_of(mirror: Path) -> dict[str, int]:
    """`git count-objects -v` of the mirror: loose and packed object counts and sizes."""
    lines = git("count-objects", "-v", cwd=mirror).splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines)}


def blob_id(data: bytes, tmp: Path) -> str:
    """The id git gives data as a blob, computed outside every repository (nothing is written)."""
    copy = tmp / "copy-for-hashing"
    copy.write_bytes(data)
    return git("hash-object", "--no-filters", str(copy), cwd=tmp).strip()


def in_mirror(mirror: Path, sha: str) -> bool:
    return git("cat-file", "--batch-check", cwd=mirror, input=sha + "\n").split()[1] != "missing"


def test_a_new_file_over_the_limit_is_refused_before_git_reads_it(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    before = objects_of(mirror)
    data = os.urandom(LIMIT + 1)
    with pool.lease(base_sha) as wt:
        (wt.path / "big.bin").write_bytes(data)
        with pytest.raises(DiffTooLarge) as refused:
            wt.diff_bytes(LIMIT)
    assert str(refused.value) == (
        "the diff is too large: the changed files add 1,048,577 bytes, over FLEET_MAX_DIFF_BYTES (1,048,576)"
    )
    assert (refused.value.size, refused.value.limit) == (LIMIT + 1, LIMIT)
    assert objects_of(mirror) == before
    assert not in_mirror(mirror, blob_id(data, tmp_path))


def test_a_huge_sparse_file_is_refused_at_once(pool: WorktreePool, mirror: Path, base_sha: str) -> None:
    before = objects_of(mirror)
    with pool.lease(base_sha) as wt:
        with open(wt.path / "sparse.bin", "wb") as sparse:
            sparse.truncate(300 * 2**30)  # 300 GiB of nothing: hashing it would take minutes and a full disk
        calc = wt.path / "calc.py"
        calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
        started = time.monotonic()
        with pytest.raises(DiffTooLarge, match=r"add 322,122,547,\d{3} bytes, over FLEET_MAX_DIFF_BYTES \(5,242,880\)"):
            wt.diff(5 * 2**20)
        assert time.monotonic() - started < 2
    assert objects_of(mirror) == before


def test_a_diff_under_the_limit_leaves_the_mirror_as_it_was(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    before = objects_of(mirror)
    text = "".join(f"line {n}\n" for n in range(20_000))
    with pool.lease(base_sha) as wt:
        (wt.path / "notes.txt").write_text(text)
        calc = wt.path / "calc.py"
        calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
        patch = wt.diff(LIMIT)
        assert git("status", "--porcelain", cwd=wt.path) == " M calc.py\n?? notes.txt\n", "the slot's index moved"
    assert "+    return a + b" in patch and "+line 19999" in patch
    assert objects_of(mirror) == before
    assert not in_mirror(mirror, blob_id(text.encode(), tmp_path))
    checkout = tmp_path / "verify"
    git("worktree", "add", "--quiet", "--detach", str(checkout), base_sha, cwd=mirror)
    git("apply", "-", cwd=checkout, input=patch)
    assert (checkout / "notes.txt").read_text() == text


def test_a_large_tracked_file_counts_by_what_it_grew(source: Path, tmp_path: Path) -> None:
    """Editing a tracked file bigger than the limit is fine; a patch over the limit is refused by its own size."""
    from system.mirror import ensure_mirror

    (source / "data.txt").write_text("".join(f"row {n}\n" for n in range(150_000)))  # about 1.4 MB
    git("add", "data.txt", cwd=source)
    git("commit", "--quiet", "-m", "data", cwd=source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    mirror = ensure_mirror(tmp_path / "mirrors", "repo-2", str(source), sha)
    pool = WorktreePool(tmp_path / "pool", mirror, size=1)
    with pool.lease(sha) as wt:
        data = wt.path / "data.txt"
        data.write_text(data.read_text().replace("row 7\n", "row seven\n"))
        assert "+row seven" in wt.diff(LIMIT)
        data.write_text(data.read_text() + "x" * (LIMIT + 1))  # grown by LIMIT + 1, and 4 by "seven"
        with pytest.raises(DiffTooLarge, match="the changed files add 1,048,581 bytes"):
            wt.diff(LIMIT)
    with pool.lease(sha) as wt:
        (wt.path / "data.txt").unlink()  # deleting it: nothing added, but the patch holds every line
        with pytest.raises(
            DiffTooLarge, match=r"^the diff is 1,\d{3},\d{3} bytes, over FLEET_MAX_DIFF_BYTES \(1,048,576\)$"
        ):
            wt.diff(LIMIT)
        assert "deleted file mode" in wt.diff()


def test_file_names_that_are_not_utf8_and_nested_repositories(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    with pool.lease(base_sha) as wt:
        (wt.path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name\n")
        nested = wt.path / "vendored"
        nested.mkdir()
        git("init", "--quiet", cwd=nested)
        (nested / "x.txt").write_text("x\n")
        git("add", "x.txt", cwd=nested)
        git("commit", "--quiet", "-m", "x", cwd=nested)
        patch = wt.diff_bytes(LIMIT)
    assert b"+latin-1 name" in patch
    assert b"new file mode 160000" in patch, "a nested repository is a gitlink, as `git add -A` makes it"
