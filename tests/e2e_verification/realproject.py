"""iniconfig 2.3.1 (tests/data/iniconfig, MIT) as a git repository whose base commit has a bug injected."""

from __future__ import annotations

import shutil
from pathlib import Path

from system.git import git
from workers.agents.scripted import INI_BUG, SAMPLE_TEST_CMD, apply_edits

DATA = Path(__file__).resolve().parent.parent / "data" / "iniconfig"
# The project's own suite, run as its CI would from the repository root (tests/data/iniconfig/conftest.py,
# committed at the base, puts src/ first). No network is needed: the project has no dependency but pytest.
INI_TEST_CMD = SAMPLE_TEST_CMD
INI_TESTS_AT_BASE = 54
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n*.egg-info/\n"


def make_iniconfig_repo(dest: Path) -> str:
    """Copy the vendored project to dest, commit it as released, then commit INI_BUG; return the base sha."""
    shutil.copytree(DATA, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    (dest / ".gitignore").write_text(GITIGNORE)
    git("init", "--quiet", "--initial-branch=main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "--quiet", "-m", "iniconfig 2.3.1 as released (sdist)", cwd=dest)
    if apply_edits(INI_BUG, dest) != len(INI_BUG):
        raise RuntimeError("the vendored iniconfig changed: INI_BUG no longer applies")
    git("commit", "--quiet", "-am", "iscommentline: only '#' starts a comment (injected bug)", cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest).strip()
