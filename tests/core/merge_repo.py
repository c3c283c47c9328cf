"""A small real repository for the merge queue's tests and benchmark: a bare target that a queue lands on, a clone
a human pushes from, and the scripted agent's `put` diffs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command

BASE_FILES = {
    "shared.py": "LIMIT = 1\n",
    "util.py": "def helper():\n    return 42\n\n\ndef other():\n    return 7\n",
    "pyproject.toml": '[project]\nname = "shop"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
    ".gitignore": "__pycache__/\n*.pyc\n.pytest_cache/\n",
    "tests/conftest.py": (
        "import sys\nimport time\nfrom pathlib import Path\n\nROOT = Path(__file__).resolve().parent.parent\n"
        "sys.path.insert(0, str(ROOT))\n\n\ndef pytest_sessionstart(session):\n"
        "    pause = ROOT / 'PAUSE'  # a suite that is mostly waiting, as a service's integration tests are\n"
        "    if pause.is_file():\n        time.sleep(float(pause.read_text()))\n"
    ),
    "tests/test_base.py": (
        "import shared\nimport util\n\n\ndef test_limit():\n    assert shared.LIMIT >= 1\n\n\n"
        "def test_other():\n    assert util.other() == 7\n"
    ),
}


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "Human", "GIT_AUTHOR_EMAIL": "h@example.com", "GIT_COMMITTER_NAME": "Human",
           "GIT_COMMITTER_EMAIL": "h@example.com", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_target(tmp: Path, pause: float = 0.0, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(the bare target repository, a clone of it a human works in), on branch main."""
    work = tmp / "human"
    for name, text in (BASE_FILES | (extra or {})).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    if pause:
        (work / "PAUSE").write_text(str(pause))
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "the shop", cwd=work)
    bare = tmp / "shop.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp)
    git("remote", "add", "origin", str(bare), cwd=work)
    return bare, work


def human_push(work: Path, name: str, text: str, tries: int = 10) -> str:
    """A person's commit pushed to main behind the queue's back. A plain push fails if main moved meanwhile (the queue
    landed an entry): then the person does what people do, rebases on it and pushes again."""
    git("pull", "-q", "--ff-only", "origin", "main", cwd=work)
    (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-qm", f"human: {name}", cwd=work)
    for _ in range(tries - 1):
        try:
            git("push", "-q", "origin", "main", cwd=work)
            break
        except subprocess.CalledProcessError:
            git("pull", "-q", "--rebase", "origin", "main", cwd=work)
    else:
        git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def put(*pairs: str, later: tuple[str, ...] = ()) -> str:
    """The agent command of a scripted agent that writes files (and others from its second attempt)."""
    args = [*pairs, *(("--later", *later) if later else ())]
    return shlex.join(scripted_command("put", *args))


def module(name: str, value: int) -> tuple[str, ...]:
    """A diff that adds an independent module and its test."""
    test = f"import {name}\\n\\n\\ndef test_{name}():\\n    assert {name}.VALUE == {value}\\n"
    return (f"{name}.py", f"VALUE = {value}\\n", f"tests/test_{name}.py", test)


def commits_after(bare: Path, base: str) -> list[str]:
    return git("rev-list", "--reverse", f"{base}..main", cwd=bare).split()


def suite_passes_at(bare: Path, sha: str, tmp: Path) -> bool:
    """Check the commit out on its own and run its tests, as a person would after the merge."""
    checkout = tmp / f"at-{sha[:12]}"
    git("worktree", "add", "-q", "--detach", str(checkout), sha, cwd=bare)
    (checkout / "PAUSE").unlink(missing_ok=True)
    done = subprocess.run(SAMPLE_TEST_CMD, shell=True, cwd=checkout, capture_output=True, text=True)
    git("worktree", "remove", "--force", str(checkout), cwd=bare)
    return done.returncode == 0
