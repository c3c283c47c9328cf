"""No filter driver runs on a checkout's files, whatever its `.gitattributes` names: a host's git config may define
one (git-lfs does, for `filter=lfs`), and git would run it outside any sandbox on the files an agent wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.git import git
from verification.patch import apply_patch
from workers.worktree import WorktreePool

DRIVER = "sh -c 'echo {0} >> \"$FLEET_PROBE\"; cat'"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file a configured `probe` filter driver writes to each time git runs it; the driver is the worker's."""
    home = tmp_path / "home"
    home.mkdir()
    marks = tmp_path / "driver-ran"
    for key, value in {"clean": DRIVER.format("clean"), "smudge": DRIVER.format("smudge")}.items():
        git("config", "--file", str(home / ".gitconfig"), f"filter.probe.{key}", value, cwd=tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("FLEET_PROBE", str(marks))
    return marks


def test_a_filter_a_diff_names_never_runs(pool: WorktreePool, base_sha: str, probe: Path) -> None:
    with pool.lease(base_sha) as worktree:
        (worktree.path / ".gitattributes").write_text("* filter=probe\n")
        (worktree.path / "notes.txt").write_text("taken as written\n")
        patch = worktree.diff_bytes()
    assert b"+taken as written\n" in patch and b"+* filter=probe\n" in patch
    with pool.lease(base_sha) as checkout:  # verification applies it, then the slot is reset
        apply_patch(checkout.path, patch.decode())
        assert (checkout.path / "notes.txt").read_text() == "taken as written\n"
    assert not probe.exists(), probe.read_text()


def test_a_filter_the_repository_names_never_runs_either(pool: WorktreePool, base_sha: str, probe: Path) -> None:
    with pool.lease(base_sha) as worktree:
        (worktree.path / ".gitattributes").write_text("* filter=probe\n")
        git("add", ".gitattributes", cwd=worktree.path)
        git("commit", "--quiet", "-m", "filtered", cwd=worktree.path)
        filtered = git("rev-parse", "HEAD", cwd=worktree.path).strip()
    with pool.lease(filtered) as checkout:  # a base commit, or a merge queue's build, checked out
        (checkout.path / "notes.txt").write_text("new\n")
        assert b"+new\n" in checkout.diff_bytes()
    assert not probe.exists(), probe.read_text()
