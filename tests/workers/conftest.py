"""Shared fixtures for the worker tests: a real sample repository, its bare mirror and a pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.git import resolve_commit
from system.mirror import ensure_mirror
from workers.agents.scripted import write_sample_repo
from workers.worktree import WorktreePool


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The demo repository, standing in for the user's registered repository."""
    repo = tmp_path / "source"
    write_sample_repo(repo)
    return repo


@pytest.fixture
def base_sha(source: Path) -> str:
    """The commit every test starts from."""
    return resolve_commit(source, "HEAD")


@pytest.fixture
def mirror(tmp_path: Path, source: Path, base_sha: str) -> Path:
    """The worker host's bare mirror of source."""
    return ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), base_sha)


@pytest.fixture
def pool(tmp_path: Path, mirror: Path) -> WorktreePool:
    """A two-slot pool that gives up quickly."""
    return WorktreePool(tmp_path / "worktrees" / "repo-1" / "default", mirror, size=2, wait_seconds=0.5)
