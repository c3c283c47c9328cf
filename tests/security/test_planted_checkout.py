"""What hostile code leaves in a checkout for the worker's own commands after it: a git repository in a submodule's
folder whose configuration runs a command, links, fifos, bytecode. The worker reads the checkout with git and
Python afterwards (the agent's diff, the verification after a diff's build script), outside any sandbox."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from system.files import copy_into, read_regular
from system.git import git
from system.mirror import ensure_mirror
from verification.envcache import untracked
from verification.setup_made import setup_made
from workers.worktree import WorktreePool
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


# Where git opens a file of the tree: opening a fifo waits for a writer, which git's 600 s timeout ended.
GIT_READS = (".gitignore", ".gitattributes", "deep/.gitignore", "deep/.gitattributes")


def test_a_fifo_where_git_reads_stops_none_of_the_workers_git_commands(tmp_path: Path) -> None:
    checkout, base = _repo_with_a_submodule(tmp_path)
    pool = WorktreePool(tmp_path / "worktrees", ensure_mirror(tmp_path / "mirrors", "r", str(checkout), base))
    lease = pool.lease(base)
    diff = CheckoutDiff(checkout, checkout / ".git", checkout / ".git", base)
    readers = {
        "the environment cache's listing": (checkout, lambda: untracked(checkout)),
        "what a build script made": (checkout, lambda: setup_made(checkout)),
        "the agent's diff": (checkout, lambda: diff.patch(None)),
        "a pooled checkout's release": (lease.path, lease.release),
    }  # fmt: skip
    for name, (tree, read) in readers.items():
        (tree / "deep").mkdir(exist_ok=True)
        (tree / "deep" / "socket").unlink(missing_ok=True)
        for planted in GIT_READS:
            os.mkfifo(tree / planted)
        with socket.socket(socket.AF_UNIX) as left:
            left.bind(str(tree / "deep" / "socket"))
        assert _returns_at_once(read, tree), name
        assert not any(os.path.lexists(tree / planted) for planted in (*GIT_READS, "deep/socket")), name
    with pool.lease(base) as again:  # the next ticket's checkout: clean, nothing of the last one's
        assert again.path == lease.path and git("status", "--porcelain", "--ignored", cwd=again.path) == ""


def test_a_fifo_left_by_a_killed_holder_stops_no_lease(tmp_path: Path) -> None:
    checkout, base = _repo_with_a_submodule(tmp_path)
    mirror = ensure_mirror(tmp_path / "mirrors", "r", str(checkout), base)
    holder = (  # leases the slot, plants the fifos and dies: nothing released it
        "import os, sys\n"
        "from pathlib import Path\n"
        "from workers.worktree import WorktreePool\n"
        "lease = WorktreePool(Path(sys.argv[1]), Path(sys.argv[2])).lease(sys.argv[3])\n"
        "(lease.path / 'deep').mkdir()\n"
        f"for planted in {GIT_READS!r}:\n"
        "    os.mkfifo(lease.path / planted)\n"
        "os._exit(0)\n"
    )
    root = tmp_path / "worktrees"
    subprocess.run([sys.executable, "-c", holder, str(root), str(mirror), base], check=True)
    pool, leased = WorktreePool(root, mirror), list[Path]()
    assert _returns_at_once(lambda: leased.append(pool.lease(base).path), root / "slot-0")
    assert leased == [root / "slot-0"] and not os.path.lexists(root / "slot-0" / ".gitignore")


def _returns_at_once(read: Callable[[], object], tree: Path) -> bool:
    """Whether read returns within 20 s; if not, the fifos it waits on are opened for writing, which frees it."""
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(20)
    stuck = thread.is_alive()
    while thread.is_alive():
        for planted in GIT_READS:
            with contextlib.suppress(OSError):
                os.close(os.open(tree / planted, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(0.1)
    return not stuck


@pytest.fixture(autouse=True)
def _quiet_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
