"""Real PyPI projects as git repositories with a bug injected in the last commit (tests and the benchmark)."""

from __future__ import annotations

import shutil
from pathlib import Path

from system.git import git
from workers.agents.scripted import INI_BUG, MI_BUG, Edit, apply_edits

DATA = Path(__file__).resolve().parent.parent / "data"
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n*.egg-info/\n"
# A test as real suites have them: it reads the version file a build writes (setuptools-scm's `_version.py`), which a
# source checkout does not have, so it fails at every commit, whatever the diff. (Not the installed distribution's
# version: more-itertools may be installed beside Fleet, as a dependency of its test tools, at this very version.)
VERSION_TEST = """from pathlib import Path

import more_itertools


def test_installed_version():
    assert (Path(more_itertools.__file__).parent / "_version.py").is_file()
"""
ENV_FAILURE = "tests/test_version.py::test_installed_version"


def make_repo(dest: Path, project: str, bug: tuple[Edit, ...], extra: dict[str, str] | None = None) -> str:
    """tests/data/<project> (plus extra files) committed as released, then the bug committed; the base sha."""
    shutil.copytree(DATA / project, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    (dest / ".gitignore").write_text(GITIGNORE)
    for name, text in (extra or {}).items():
        (dest / name).write_text(text)
    git("init", "--quiet", "--initial-branch=main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "--quiet", "-m", f"{project} as released (sdist)", cwd=dest)
    if apply_edits(bug, dest) != len(bug):
        raise RuntimeError(f"the vendored {project} changed: its injected bug no longer applies")
    git("commit", "--quiet", "-am", "an injected bug", cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest).strip()


def iniconfig_repo(dest: Path) -> str:
    return make_repo(dest, "iniconfig", INI_BUG)


def more_itertools_repo(dest: Path, env_failure: bool = False) -> str:
    return make_repo(dest, "more_itertools", MI_BUG, {"tests/test_version.py": VERSION_TEST} if env_failure else None)
