"""What an attempt is told about its sandbox: a toolchain shown as an empty folder, and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from system import covers
from system.sandbox import bwrap_missing, toolchain_roots
from workers.agent_sandbox import SandboxPlan, build_sandbox
from workers.worktree import WorktreePool

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")


def test_a_toolchain_shown_as_an_empty_folder_is_named_in_the_attempts_warning(
    tmp_path: Path, pool: WorktreePool, base_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A toolchain installed with umask 077 holds more private files than a sandbox can cover one by one, so the
    # sandbox shows it empty: its agent found no Python there, and only the worker's log said why.
    monkeypatch.setattr(covers, "MOST_COVERS", 2)
    toolchain = tmp_path / "private-pyenv"
    (toolchain / "bin").mkdir(parents=True)
    for name in ("python", "pip", "idle"):
        (toolchain / "bin" / name).write_text("#!/bin/sh\n")
        (toolchain / "bin" / name).chmod(0o700)
    readable = toolchain_roots(f"{toolchain / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}", ["git"])
    with pool.lease(base_sha) as worktree:
        attempt = tmp_path / "attempt"
        attempt.mkdir()
        plan = SandboxPlan(worktree.path, worktree.gitdir, worktree.mirror, base_sha, attempt, attempt / "home",
                           (), readable)  # fmt: skip
        warning = build_sandbox(plan).warning
    assert warning is not None
    assert f"sandboxes show {toolchain.resolve()} as an empty folder: 3 paths in it others may not read" in warning
