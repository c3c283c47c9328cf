"""Fixtures for the verification tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_helpers import Repo, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A fresh calc repository for one test."""
    return make_repo(tmp_path / "repo")
