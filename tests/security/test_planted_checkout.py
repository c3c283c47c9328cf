"""What hostile code leaves in a checkout for the worker's own commands after it: a git repository in a submodule's
folder whose configuration runs a command, links, fifos, bytecode. The worker reads the checkout with git and
Python afterwards (the agent's diff, the verification after a diff's build script), outside any sandbox."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from system.files import copy_into, read_regular
from system.git import git
from verification.envcache import untracked
from verification.setup_made import setup_made
from workers.worktree_diff import CheckoutDiff

COMMIT = ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm")


def _repo_with_a_submodule(root: Path) -> tuple[Path, str]:
    """A clone whose base commit has a gitlink at `sub` (and an empty folder there, as a checkout has)."""
    source = root / "source"
    source.mkdir()
    git("init", "-q", cwd=source)
    (source / "a.txt").write_text("a\n")
    git("add", "a.txt", cwd=source)
    git(*COMMIT, "a", cwd=source)
    sha = git("rev-parse", "HEAD", cwd=source).strip()
    git("update-index", "--add", "--cacheinfo", f"160000,{sha},sub", cwd=source)
    git(*COMMIT, "a submodule", cwd=source)
    git("clone", "-q", str(source), str(root / "checkout"), cwd=root)
    checkout = root / "checkout"
    (checkout / "sub").mkdir(exist_ok=True)
    return checkout, git("rev-parse", "HEAD", cwd=checkout).strip()


def _plant(checkout: Path, canary: Path) -> None:
    """A repository in the submodule's folder whose clean filter (run when git hashes a file) makes canary."""
    sub = checkout / "sub"
    subprocess.run(["git", "init", "-q"], cwd=sub, check=True)
    subprocess.run(["git", "config", "filter.x.clean", f"sh -c 'touch {canary}; cat'"], cwd=sub, check=True)
    (sub / ".gitattributes").write_text("* filter=x\n")
    (sub / "f").write_text("f\n")
    subprocess.run(["git", "add", "."], cwd=sub, check=True)
    subprocess.run(["git", *COMMIT, "planted"], cwd=sub, check=True)
    canary.unlink(missing_ok=True)
    os.utime(sub / "f", (1, 1))  # changed since git last hashed it: the next status hashes it again


def test_a_repository_planted_in_a_submodules_folder_runs_nothing_of_its_own(tmp_path: Path) -> None:
    checkout, base = _repo_with_a_submodule(tmp_path)
    canary = tmp_path / "ran"
    readers = {
        "the environment cache's listing": lambda: untracked(checkout),
        "what a build script made": lambda: setup_made(checkout),
        "the agent's diff": lambda: CheckoutDiff(checkout, checkout / ".git", checkout / ".git", base).patch(None),
    }
    for name, read in readers.items():
        _plant(checkout, canary)
        read()
        assert not canary.exists(), name
        subprocess.run(["rm", "-rf", str(checkout / "sub")], check=True)
        (checkout / "sub").mkdir()


def test_what_a_build_script_made_is_sorted_by_what_it_can_run(tmp_path: Path) -> None:
    checkout, _ = _repo_with_a_submodule(tmp_path)
    (checkout / "tests").mkdir()
    (checkout / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (checkout / ".gitignore").write_text("generated/\n__pycache__/\npytest.ini\n")
    git("add", "-A", cwd=checkout)
    git(*COMMIT, "base", cwd=checkout)
    made_here = {
        "tests/test_a.py": "def test_a(): assert True\n",  # a tracked file changed
        "tests/fixture.json": "{}",  # test data: the environment
        "tests/__pycache__/test_a.cpython-311.pyc": "forged",  # bytecode: removed
        "generated/deep/conftest.py": "",  # ignored, in a folder pytest enters
        "generated/data.bin": "",
        "sub/conftest.py": "",  # in a submodule's folder, which git does not look into
        "tests/nested/.git/HEAD": "ref: refs/heads/main\n",  # a nested repository, which git lists whole...
        "tests/nested/conftest.py": "",  # ...and what is in it
        "pytest.ini": "[pytest]\n",  # copied in by Fleet: its own
        # An environment with an ignore file of its own ("*"), not named in the repository's: never read.
        ".venv/.gitignore": "*\n",
        ".venv/pyvenv.cfg": "",
        ".venv/lib/python3/site-packages/__editable__.pkg.pth": "",
        "venv2/pyvenv.cfg": "",
        "venv2/lib/site.py": "",
        "build/lib/pkg/__init__.py": "",  # a build's copy, which no test run reads
    }
    for path, text in made_here.items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(text)
    os.symlink(checkout / "generated", checkout / "tests" / "linked")
    made = setup_made(checkout, copied=["./pytest.ini"])
    expected = ["generated/deep/conftest.py", "sub/conftest.py", "tests/nested/conftest.py", "tests/test_a.py"]
    assert made.changed == expected
    assert made.caches == ["tests/__pycache__/test_a.cpython-311.pyc", "tests/linked"]
    made.remove_caches(checkout)
    assert not (checkout / "tests" / "linked").is_symlink() and (checkout / "generated" / "deep").is_dir()
    assert not (checkout / "tests" / "__pycache__" / "test_a.cpython-311.pyc").exists()


def test_a_fifo_or_link_where_the_worker_reads_or_writes_is_never_waited_on_or_followed(tmp_path: Path) -> None:
    host = tmp_path / "host.txt"
    host.write_text("host\n")
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    os.mkfifo(checkout / "pyproject.toml")
    os.symlink(host, checkout / "tests" / "test_hidden.py")
    os.mkfifo(checkout / "tests" / "test_other.py")
    assert read_regular(checkout / "pyproject.toml", 100) is None  # returns at once: no writer is waited for
    assert read_regular(checkout / "tests" / "test_hidden.py", 100) is None  # a link is not followed
    source = tmp_path / "hidden.py"
    source.write_text("hidden\n")
    for name in ("test_hidden.py", "test_other.py"):
        copy_into(checkout, f"tests/{name}", source)
        assert (checkout / "tests" / name).read_text() == "hidden\n"
    assert host.read_text() == "host\n"


@pytest.fixture(autouse=True)
def _quiet_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
