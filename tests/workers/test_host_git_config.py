"""A worker host's own git configuration changes nothing Fleet checks out, tests or delivers: line endings are the
repository's (its `.gitattributes`), as on any Linux machine, never the host user's `core.autocrlf`/`core.eol`."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.git import git
from workers.worktree import WorktreePool


def host_git_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, str], attributes: str = ""
) -> None:
    """The worker user's own git configuration (~/.gitconfig), and its global attributes file, which git reads from
    ~/.config/git/attributes without any setting."""
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    if attributes:
        (home / ".config" / "git" / "attributes").write_text(attributes)
    for key, value in config.items():
        git("config", "--file", str(home / ".gitconfig"), key, value, cwd=tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


@pytest.fixture
def crlf_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker user's ~/.gitconfig asks for CRLF checkouts (copied over from a Windows machine)."""
    host_git_config(tmp_path, monkeypatch, {"core.autocrlf": "true", "core.eol": "crlf"})


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


@pytest.fixture
def diff_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker user's git configuration shapes its diffs (no a/ b/ prefixes, no context lines) and asks for CRLF
    in its global attributes file, which git reads from ~/.config/git/attributes without any setting."""
    config = {"diff.noprefix": "true", "diff.mnemonicPrefix": "true", "diff.context": "0"}
    host_git_config(tmp_path, monkeypatch, config, attributes="* text eol=crlf\n")


def test_a_checkout_and_its_diff_are_the_repositorys_whatever_the_hosts_attributes_and_diff_config(
    pool: WorktreePool, base_sha: str, diff_host: None
) -> None:
    # Every agent's diff "did not apply at the base commit" (`diff --git calc.py calc.py` is read as the path
    # `py`... with its first part stripped; no context line to place a change by), and the checkout was CRLF.
    with pool.lease(base_sha) as worktree:
        tracked = [worktree.path / name for name in git("ls-files", cwd=worktree.path).split()]
        assert tracked and not any(b"\r\n" in path.read_bytes() for path in tracked)
        changed = next(path for path in tracked if path.suffix == ".py" and path.read_text().count("\n") > 4)
        lines = changed.read_text().splitlines(keepends=True)
        changed.write_text("".join([*lines[:2], "# changed\n", *lines[2:]]))
        patch = worktree.diff()
    name = changed.relative_to(worktree.path).as_posix()
    assert f"diff --git a/{name} b/{name}\n" in patch and f"--- a/{name}\n+++ b/{name}\n" in patch
    assert f" {lines[1]}+# changed\n {lines[2]}" in patch  # with its context, where git apply places it
