"""Scripted demo agents for `fleet demo` and tests; run as `python -m workers.agents.scripted <script> [args]`.

They follow the shell agent contract: read $FLEET_PROMPT_FILE, edit files in the current directory, print
what they do (that is the transcript). The sample repository (write_sample_repo) has three bugs in calc.py:

    add:  `return a - b`      (fixed: `return a + b`)          tests/test_calc.py::test_add
    mul:  `return a * b + 1`  (fixed: `return a * b`)          tests/test_calc.py::test_mul
    div:  `return a // b`     (fixed: `return a / b`)          tests/test_calc.py::test_div
    neg:  correct                                             tests/test_calc.py::test_neg passes

Scripts:
    fix-add          fixes add.
    fix-div          fixes div.
    needs-feedback   a wrong mul fix (`return a * b - 1`) until the prompt contains the word "Feedback"
                     (as in the retry prompt's "## Feedback on your previous attempt"), then the right one.
    never            a wrong div fix every time (`return round(a / b)`: div(7, 2) == 4).
    sleep SECONDS    sleeps, then fix-add (for kill and cancel tests).
    noisy            prints 5 MB, then fix-add (for bounded transcripts).
    hang             sleeps forever.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from workers.git import git

Edit = tuple[str, str, str]  # (file, old text, new text)

FIX_ADD: tuple[Edit, ...] = (("calc.py", "return a - b", "return a + b"),)
FIX_DIV: tuple[Edit, ...] = (("calc.py", "return a // b", "return a / b"),)
WRONG_MUL: tuple[Edit, ...] = (("calc.py", "return a * b + 1", "return a * b - 1"),)
FIX_MUL: tuple[Edit, ...] = (
    ("calc.py", "return a * b + 1", "return a * b"),
    ("calc.py", "return a * b - 1", "return a * b"),
)
WRONG_DIV: tuple[Edit, ...] = (("calc.py", "return a // b", "return round(a / b)"),)
FEEDBACK_MARKER = "Feedback"
NOISE_BYTES = 5 * 1024 * 1024
# The sample's tests need no pytest plugin; not loading the machine's installed ones saves a second per run.
SAMPLE_TEST_CMD = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {shlex.quote(sys.executable)} -m pytest -q"
SCRIPTS = ("fix-add", "fix-div", "needs-feedback", "never", "sleep", "noisy", "hang")

SAMPLE_CALC = '''"""A tiny calculator with bugs for Fleet's demo agents to fix."""


def add(a, b):
    return a - b


def mul(a, b):
    return a * b + 1


def div(a, b):
    return a // b


def neg(a):
    return -a
'''

SAMPLE_TESTS = """import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works with any pytest import mode

from calc import add, div, mul, neg  # noqa: E402


def test_add():
    assert add(2, 3) == 5


def test_mul():
    assert mul(3, 4) == 12


def test_div():
    assert div(7, 2) == 3.5


def test_neg():
    assert neg(2) == -2
"""

SAMPLE_PYPROJECT = '[project]\nname = "calc"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'

SAMPLE_FILES = {
    "calc.py": SAMPLE_CALC,
    "tests/test_calc.py": SAMPLE_TESTS,
    ".gitignore": "__pycache__/\n*.pyc\n.pytest_cache/\n",
    # An ini file here stops pytest's rootdir search, so a checkout nested in another project stays independent.
    "pyproject.toml": SAMPLE_PYPROJECT,
    "README.md": "# calc\n\nA sample repository for `fleet demo`: three bugs, four tests.\n",
}


def write_sample_repo(path: Path) -> None:
    """Create the demo git repository at path: calc.py with bugs in add, mul and div, committed on main."""
    for name, text in SAMPLE_FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "--quiet", "-m", "calc with three bugs", cwd=path)


def scripted_command(script: str, *args: str) -> tuple[str, ...]:
    """The argv that runs a scripted agent with this interpreter (for AgentOptions.command)."""
    # -P: the worktree (cwd) must not shadow Fleet's own modules.
    return (sys.executable, "-P", "-m", "workers.agents.scripted", script, *args)


def apply_edits(edits: tuple[Edit, ...], root: Path) -> int:
    """Apply each edit whose old text is present; print and return how many applied."""
    applied = 0
    for name, old, new in edits:
        target = root / name
        text = target.read_text() if target.is_file() else ""
        if old in text:
            target.write_text(text.replace(old, new, 1))
            print(f"edited {name}: {old!r} -> {new!r}", flush=True)
            applied += 1
    if not applied:
        print("nothing to edit", flush=True)
    return applied


def read_prompt() -> str:
    """The prompt text from $FLEET_PROMPT_FILE ('' when there is none)."""
    name = os.environ.get("FLEET_PROMPT_FILE", "")
    prompt = Path(name) if name else None
    text = prompt.read_text(errors="replace") if prompt is not None and prompt.is_file() else ""
    print(f"read prompt: {len(text)} characters", flush=True)
    return text


def run_script(script: str, args: list[str], root: Path) -> int:
    """Run one named script in root; returns the process exit code."""
    prompt = read_prompt()
    if script == "sleep":
        seconds = float(args[0]) if args else 1.0
        print(f"sleeping {seconds:g}s", flush=True)
        time.sleep(seconds)
    elif script == "noisy":
        _print_noise(NOISE_BYTES)
    elif script == "hang":
        print("hanging", flush=True)
        while True:
            time.sleep(3600)
    edits = _edits_for(script, prompt)
    return 0 if apply_edits(edits, root) else 1


def _edits_for(script: str, prompt: str) -> tuple[Edit, ...]:
    if script == "needs-feedback":
        has_feedback = FEEDBACK_MARKER in prompt
        print("feedback found: writing the right fix" if has_feedback else "no feedback: guessing", flush=True)
        return FIX_MUL if has_feedback else WRONG_MUL
    return {"never": WRONG_DIV, "fix-div": FIX_DIV}.get(script, FIX_ADD)


def _print_noise(total: int) -> None:
    line = b"noise " * 15 + b"\n"
    out = sys.stdout.buffer
    for _ in range(total // len(line)):
        out.write(line)
    out.flush()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `python -m workers.agents.scripted <script> [args]`."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SCRIPTS:
        print(f"usage: python -m workers.agents.scripted {{{','.join(SCRIPTS)}}} [args]", file=sys.stderr)
        return 2
    return run_script(args[0], args[1:], Path.cwd())


if __name__ == "__main__":
    sys.exit(main())
