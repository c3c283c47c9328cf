"""A worker host's own git configuration changes nothing Fleet checks out, tests or delivers: line endings are the
repository's (its `.gitattributes`), as on any Linux machine, never the host user's `core.autocrlf`/`core.eol`."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.git import git
from workers.worktree import WorktreePool


@pytest.fixture
def crlf_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker user's ~/.gitconfig asks for CRLF checkouts (copied over from a Windows machine)."""
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {"core.autocrlf": "true", "core.eol": "crlf"}.items():
        git("config", "--file", str(home / ".gitconfig"), key, value, cwd=tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


def test_a_checkout_keeps_the_repositorys_line_endings_whatever_the_hosts_git_config(
    pool: WorktreePool, base_sha: str, crlf_host: None
) -> None:
    # The tests ran on CRLF files (a shell script's `#!/bin/sh\r` fails) where the repository and its CI hold LF.
    with pool.lease(base_sha) as worktree:
        tracked = [worktree.path / name for name in git("ls-files", cwd=worktree.path).split()]
        assert tracked and not any(b"\r\n" in path.read_bytes() for path in tracked)
        (worktree.path / "notes.txt").write_text("one\ntwo\n")
        patch = worktree.diff_bytes()
    assert b"+one\n+two\n" in patch and b"\r" not in patch
