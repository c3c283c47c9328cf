"""Helpers for the verification tests: real git repositories with a buggy calc.py and its tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)
FIXED_CALC = CALC.replace("a - b", "a + b")
PYTEST = f"{sys.executable} -m pytest -q"
# Entry-point plugins (hypothesis) cost a second per pytest start; the repos under test need none.
FAST_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def sh_git(*args: str, cwd: Path) -> str:
    """Run git for test setup (the code under test uses system.git)."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


class Repo:
    """A git repository at a base commit, able to make diffs and clean clones of itself."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, files: Mapping[str, str | bytes | None], root: Path | None = None) -> None:
        """Write (str or bytes) or delete (None) files."""
        for name, content in files.items():
            target = (root or self.path) / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    def commit(self, message: str = "base") -> None:
        sh_git("add", "-A", cwd=self.path)
        sh_git("commit", "-q", "-m", message, cwd=self.path)

    def diff(self, files: Mapping[str, str | bytes | None]) -> str:
        """The diff an agent would produce by making these changes; the repo stays at the base."""
        self.write(files)
        sh_git("add", "-A", cwd=self.path)
        text = sh_git("diff", "--cached", "--binary", "-M", cwd=self.path)
        sh_git("reset", "-q", "--hard", cwd=self.path)
        sh_git("clean", "-qfdx", cwd=self.path)
        return text

    def clone(self, dest: Path) -> Path:
        """A fresh checkout of the base commit."""
        sh_git("clone", "-q", str(self.path), str(dest), cwd=self.path.parent)
        return dest


def make_repo(path: Path, files: Mapping[str, str] | None = None) -> Repo:
    """A repo with calc.py (add is buggy) and tests/test_calc.py, committed."""
    path.mkdir(parents=True)
    sh_git("init", "-q", "-b", "main", cwd=path)
    repo = Repo(path)
    repo.write({"calc.py": CALC, "tests/test_calc.py": TEST_CALC, **(files or {})})
    repo.commit()
    return repo
