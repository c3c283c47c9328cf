"""Fleet finds its programs (git, bwrap, an agent's command) on the PATH's absolute folders only, once each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from system.files import program_on
from system.git import git
from verification.envcache import _copy_paths


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


def test_with_no_absolute_folder_holding_git_fleet_refuses_rather_than_run_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    marker = tmp_path / "ran"
    executable(checkout / "git", f"#!/bin/sh\ntouch {marker}\n")
    for search in (".", "", os.pathsep.join(["bin", "."])):
        monkeypatch.setenv("PATH", search)
        with pytest.raises(FileNotFoundError, match="git is not in any absolute folder of the PATH"):
            git("status", cwd=checkout)
    assert not marker.exists()


def test_the_environment_cache_never_runs_a_checkouts_cp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout, kept = tmp_path / "checkout", tmp_path / "kept"
    (checkout / "venv").mkdir(parents=True)
    (checkout / "venv" / "lib.py").write_text("x = 1\n")
    kept.mkdir()
    marker = tmp_path / "ran"
    executable(checkout / "cp", f"#!/bin/sh\ntouch {marker}\n")
    monkeypatch.setenv("PATH", os.pathsep.join([".", os.environ["PATH"]]))
    _copy_paths(checkout, ["venv"], kept)
    assert (kept / "venv" / "lib.py").read_text() == "x = 1\n" and not marker.exists()


def test_a_program_is_found_on_absolute_folders_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = executable(tmp_path / "bin" / "fleet-test-tool")
    monkeypatch.chdir(tmp_path / "bin")
    assert program_on("fleet-test-tool", ".") is None
    assert program_on("fleet-test-tool", os.pathsep.join(["bin", str(tool.parent)])) == str(tool)


def test_a_program_removed_moved_or_installed_later_is_looked_up_again(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    search = os.pathsep.join([str(first), str(second)])
    assert program_on("fleet-test-tool", search) is None
    tool = executable(first / "fleet-test-tool")  # installed while the worker runs: a miss is never kept
    assert program_on("fleet-test-tool", search) == str(tool)
    tool.unlink()
    moved = executable(second / "fleet-test-tool")
    assert program_on("fleet-test-tool", search) == str(moved)
    moved.unlink()
    moved.mkdir()  # a folder in its place is no program
    assert program_on("fleet-test-tool", search) is None


def test_a_path_is_not_a_program_name() -> None:
    with pytest.raises(ValueError, match="a program name, not a path"):
        program_on("./git", "/usr/bin")
