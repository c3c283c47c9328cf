"""Fleet finds its programs (git, bwrap, an agent's command) on the PATH's absolute folders only, once each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from system.files import program_on
from system.git import git


def executable(path: Path, script: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path


def test_a_git_in_the_checkout_is_never_run_even_with_a_relative_path_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    marker = tmp_path / "ran"
    executable(checkout / "git", f"#!/bin/sh\ntouch {marker}\n")  # a repository's file named git
    monkeypatch.setenv("PATH", os.pathsep.join([".", "", os.environ["PATH"]]))
    assert git("rev-parse", "--is-inside-work-tree", cwd=checkout).strip() == "true"
    assert not marker.exists()


def test_a_program_is_found_on_absolute_folders_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = executable(tmp_path / "bin" / "fleet-test-tool")
    monkeypatch.chdir(tmp_path / "bin")
    assert program_on("fleet-test-tool", ".") is None
    assert program_on("fleet-test-tool", os.pathsep.join(["bin", str(tool.parent)])) == str(tool)


def test_a_program_removed_or_moved_is_looked_up_again(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    search = os.pathsep.join([str(first), str(second)])
    tool = executable(first / "fleet-test-tool")
    assert program_on("fleet-test-tool", search) == str(tool)
    tool.unlink()
    moved = executable(second / "fleet-test-tool")
    assert program_on("fleet-test-tool", search) == str(moved)
    moved.unlink()
    assert program_on("fleet-test-tool", search) is None
