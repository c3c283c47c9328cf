"""Real PyPI projects (tests/data, MIT) as git repositories whose base commit has a bug injected: iniconfig, six."""

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
    return _vendored_repo(DATA, dest, "iniconfig 2.3.1", INI_BUG, "iscommentline: only '#' starts a comment")


def _vendored_repo(data: Path, dest: Path, release: str, bug: tuple[tuple[str, str, str], ...], what: str) -> str:
    """data as a git repository at dest: the release as one commit, then the injected bug; the base sha."""
    shutil.copytree(data, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    (dest / ".gitignore").write_text(GITIGNORE)
    git("init", "--quiet", "--initial-branch=main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "--quiet", "-m", f"{release} as released (sdist)", cwd=dest)
    if apply_edits(bug, dest) != len(bug):
        raise RuntimeError(f"the vendored {release} changed: its injected bug no longer applies")
    git("commit", "--quiet", "-am", f"{what} (injected bug)", cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest).strip()


SIX_DATA = DATA.parent / "six"
SIX_TEST_CMD = SAMPLE_TEST_CMD  # test_six.py sits at the root, next to six.py: pytest puts the root on sys.path
SIX_FAILING = ("test_six.py::test_b",)
SIX_BUG = (("six.py", '        return s.encode("latin-1")\n', '        return s.encode("utf-8")\n'),)
SIX_FIX = (("six.py", '        return s.encode("utf-8")\n', '        return s.encode("latin-1")\n'),)


def make_six_repo(dest: Path) -> str:
    """Copy the vendored six to dest, commit it as released, then commit SIX_BUG; return the base sha."""
    return _vendored_repo(SIX_DATA, dest, "six 1.17.0", SIX_BUG, "b(): encode with UTF-8")
