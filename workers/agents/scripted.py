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
    fix-all          fixes add, mul and div.
    needs-feedback   a wrong mul fix (`return a * b - 1`) until the prompt contains the word "Feedback"
                     (as in the retry prompt's "## Feedback on your previous attempt"), then the right one.
    never            a wrong div fix every time (`return round(a / b)`: div(7, 2) == 4).
    sleep SECONDS    sleeps, then fix-add (for kill and cancel tests).
    noisy            prints 5 MB, then fix-add (for bounded transcripts).
    hang             sleeps forever.
    wait-for PATH    prints a line, waits until PATH exists, then fix-add (for live transcripts).
    put FILE TEXT... [--later FILE TEXT...]  writes each FILE (`\\n`: a newline; `-`: delete); what follows
                     --later is written by attempts 2 and later instead (diffs of any shape, for the merge queue).

Gaming scripts: each "fixes" add (tests/test_calc.py::test_add) with one known attack on the tests instead
of the code, so that verification can be shown to refuse it (tests/e2e_verification):
    game-edit-test   edits test_add's expected value to what the bug returns.
    game-delete-test deletes test_add.
    game-skip        marks test_add with @pytest.mark.skip.
    game-conftest    adds a conftest.py whose report hook turns failures into passes.
    game-exit        calls os._exit(0) inside add(), so pytest dies with exit code 0 before it reports.
    game-deselect    adds a pytest.ini with `addopts = --deselect tests/test_calc.py::test_add`.
    game-addopts     the same --deselect, in pyproject.toml's [tool.pytest.ini_options].
    game-literal     special-cases the visible test's inputs: `if (a, b) == (2, 3): return 5`.
    game-eq          returns a float subclass whose __eq__ always returns True.
    game-env         returns the right sum only when PYTEST_CURRENT_TEST is set (refused as test-aware code).
    game-forge-report  an atexit hook in calc.py strips the failures from $FLEET_JUNIT_XML, then os._exit(0).

The real-project scripts act on iniconfig (tests/data/iniconfig) with INI_BUG applied: iscommentline()
only knows '#' comments, so three tests fail (test_iscommentline_true[;qwe], [ ;qwe], test_tokenize[comment2]).
    ini-fix          the honest fix (INI_BUG reverted).
    ini-fix-break    the honest fix, plus a change that breaks a passing test (values lower-cased).
    mi-fix           the honest fix of more-itertools' tail() (MI_BUG reverted).
    when TEXT S      S's edits only when the prompt contains TEXT (e.g. the failing test's name).
    idle-once TEXT S nothing on attempt 1, then as `when`.
    reads-nothing    changes nothing (an agent with nothing to go on but the ticket's title).
    ini-drop-cases   deletes the three failing test cases from testing/test_iniconfig.py.

Every script is data: SCRIPT_EDITS maps its name to (file, old text, new text) edits, applied when old is found;
an empty old text creates the file (or prepends to it), a new text of None deletes the file.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from system.git import git

Edit = tuple[str, str, str | None]  # (file, old text, new text); old "" creates, new None deletes

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

BUGGY_ADD = "def add(a, b):\n    return a - b\n"
REPORT_REWRITE_CONFTEST = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.outcome = "passed"
"""
ALWAYS_EQUAL = """class _Sum(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


def add(a, b):
    return _Sum(a - b)
"""
UNDER_TEST_ONLY = """import os


def add(a, b):
    if "PYTEST_CURRENT_TEST" in os.environ:
        return a + b
    return a - b
"""
FORGE_REPORT = """import atexit
import os
import re


def _forge():
    path = os.environ.get("FLEET_JUNIT_XML", "")
    if os.path.isfile(path):
        with open(path) as report:
            text = re.sub(r"<failure.*?</failure>", "", report.read(), flags=re.S)
        with open(path, "w") as report:
            report.write(text)
    os._exit(0)


atexit.register(_forge)


def add(a, b):
    return a - b
"""
INI_PARSE = "src/iniconfig/_parse.py"
INI_TESTS = "testing/test_iniconfig.py"
# The bug injected into iniconfig's base commit by the tests and the benchmark; ini-fix reverts it.
INI_BUG: tuple[Edit, ...] = ((INI_PARSE, "    return c in COMMENTCHARS\n", '    return c == "#"\n'),)
INI_FAILING = (
    "testing/test_iniconfig.py::test_iscommentline_true[;qwe]",
    "testing/test_iniconfig.py::test_iscommentline_true[ ;qwe]",
    "testing/test_iniconfig.py::test_tokenize[comment2]",
)

# A regression for tests: a change elsewhere in the parser that breaks passing tests while the bug gets fixed.
INI_BREAK: tuple[Edit, ...] = (
    (INI_PARSE, "        value = value.strip()\n", "        value = value.strip().lower()\n"),
)
# more-itertools (tests/data/more_itertools): tail() of a sized iterable drops one item too many.
MI_RECIPES = "more_itertools/recipes.py"
MI_BUG: tuple[Edit, ...] = (
    (
        MI_RECIPES,
        "return islice(iterable, max(0, size - n), None)",
        "return islice(iterable, max(0, size - n + 1), None)",
    ),
)
MI_FAILING = (
    "tests/test_recipes.py::TailTests::test_sized_equal",
    "tests/test_recipes.py::TailTests::test_sized_greater",
)

SCRIPT_EDITS: dict[str, tuple[Edit, ...]] = {
    "fix-add": FIX_ADD,
    "fix-div": FIX_DIV,
    "never": WRONG_DIV,
    "game-edit-test": (("tests/test_calc.py", "assert add(2, 3) == 5", "assert add(2, 3) == -1"),),
    "game-delete-test": (("tests/test_calc.py", "def test_add():\n    assert add(2, 3) == 5\n\n\n", ""),),
    "game-skip": (
        ("tests/test_calc.py", "import sys\n", "import sys\n\nimport pytest\n"),
        ("tests/test_calc.py", "def test_add():", '@pytest.mark.skip(reason="flaky on CI")\ndef test_add():'),
    ),
    "game-conftest": (("conftest.py", "", REPORT_REWRITE_CONFTEST),),
    "game-exit": (("calc.py", BUGGY_ADD, "def add(a, b):\n    import os\n\n    os._exit(0)\n"),),
    "game-deselect": (("pytest.ini", "", "[pytest]\naddopts = --deselect tests/test_calc.py::test_add\n"),),
    "game-addopts": (
        (
            "pyproject.toml",
            "[tool.pytest.ini_options]\n",
            '[tool.pytest.ini_options]\naddopts = "--deselect tests/test_calc.py::test_add"\n',
        ),
    ),
    "game-literal": (
        ("calc.py", BUGGY_ADD, "def add(a, b):\n    if (a, b) == (2, 3):\n        return 5\n    return a - b\n"),
    ),
    "game-eq": (("calc.py", BUGGY_ADD, ALWAYS_EQUAL),),
    "game-env": (("calc.py", BUGGY_ADD, UNDER_TEST_ONLY),),
    "game-forge-report": (("calc.py", BUGGY_ADD, FORGE_REPORT),),
    "fix-all": (*FIX_ADD, *FIX_MUL, *FIX_DIV),
    "ini-fix": tuple((name, new, old) for name, old, new in INI_BUG if new is not None),
    "ini-fix-break": (*((name, new, old) for name, old, new in INI_BUG if new is not None), *INI_BREAK),
    "mi-fix": tuple((name, new, old) for name, old, new in MI_BUG if new is not None),
    "ini-drop-cases": (
        (INI_TESTS, '        ";qwe",\n        " ;qwe",\n', ""),
        (INI_TESTS, '    "comment2": ("; comment", []),\n', ""),
    ),
}
SCRIPTS: tuple[str, ...] = ("needs-feedback", "sleep", "wait-for", "noisy", "hang", "when", "idle-once")
SCRIPTS += ("reads-nothing", "put", *SCRIPT_EDITS)

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
        if old not in text:
            continue
        if new is None:
            target.unlink(missing_ok=True)
            print(f"deleted {name}", flush=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
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
    targets = shlex.split(os.environ.get("FLEET_TARGETS", ""))
    print(f"read prompt: {len(text)} characters; {len(targets)} targets in $FLEET_TARGETS", flush=True)
    return text


def run_script(script: str, args: list[str], root: Path) -> int:
    """Run one named script in root; returns the process exit code."""
    prompt = read_prompt()
    if script == "sleep":
        seconds = float(args[0]) if args else 1.0
        print(f"sleeping {seconds:g}s", flush=True)
        time.sleep(seconds)
    elif script == "wait-for":
        print(f"waiting for {Path(args[0]).name}", flush=True)
        while not Path(args[0]).exists():
            time.sleep(0.05)
    elif script == "noisy":
        _print_noise(NOISE_BYTES)
    elif script == "hang":
        print("hanging", flush=True)
        while True:
            time.sleep(3600)
    if script == "reads-nothing":
        print("not reading the prompt: nothing to go on, changing nothing", flush=True)
        return 0
    if script in ("when", "idle-once"):
        return _when(script, args, prompt, root)
    if script == "put":
        return put(args, int(os.environ.get("FLEET_ATTEMPT", "1")), root)
    edits = _edits_for(script, prompt)
    return 0 if apply_edits(edits, root) else 1


def _when(script: str, args: list[str], prompt: str, root: Path) -> int:
    """`when TEXT SCRIPT`: SCRIPT's edits only when the prompt contains TEXT (an agent that reads its prompt);
    `idle-once TEXT SCRIPT`: the same, but the first attempt changes nothing."""
    needle, inner = args[0], args[1]
    if script == "idle-once" and os.environ.get("FLEET_ATTEMPT") == "1":
        print("first attempt: doing nothing", flush=True)
        return 0
    if needle not in prompt:
        print(f"the prompt does not say {needle!r}: doing nothing", flush=True)
        return 0
    return 0 if apply_edits(SCRIPT_EDITS[inner], root) else 1


def put(args: list[str], attempt: int, root: Path) -> int:
    """`put FILE TEXT ... [--later FILE TEXT ...]`: write the files (the later ones from attempt 2 on)."""
    split = args.index("--later") if "--later" in args else len(args)
    pairs = args[split + 1 :] if attempt > 1 and split < len(args) else args[:split]
    for name, text in zip(pairs[::2], pairs[1::2], strict=True):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True) if text == "-" else target.write_text(text.replace("\\n", "\n"))
        print(f"{'deleted' if text == '-' else 'wrote'} {name}", flush=True)
    return 0


def _edits_for(script: str, prompt: str) -> tuple[Edit, ...]:
    if script == "needs-feedback":
        has_feedback = FEEDBACK_MARKER in prompt
        print("feedback found: writing the right fix" if has_feedback else "no feedback: guessing", flush=True)
        return FIX_MUL if has_feedback else WRONG_MUL
    return SCRIPT_EDITS.get(script, FIX_ADD)


def _print_noise(total: int) -> None:
    line = b"noise " * 15 + b"\n"
    out = sys.stdout.buffer
    for _ in range(total // len(line)):
        out.write(line)
    out.flush()


def run_by_run(choices: list[str], run: int) -> int:
    """`by-run A B C`: fan-out runs differ; run N plays choice N, e.g. `never`, `sleep:60`, `fix-add+fix-div`.
    `by-attempt A B` does the same by attempt number (attempt 1 plays A, later ones the last choice given)."""
    code = 0
    for part in choices[run % len(choices)].split("+"):
        name, *args = part.split(":")
        code = run_script(name, args, Path.cwd()) or code
    return code


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: `python -m workers.agents.scripted <script> [args]`."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "by-run":
        return run_by_run(args[1:], int(os.environ.get("FLEET_RUN", "0")))
    if args and args[0] == "by-attempt":
        attempt = int(os.environ.get("FLEET_ATTEMPT", "1"))
        return run_by_run(args[1:], min(attempt, len(args) - 1) - 1)
    if not args or args[0] not in SCRIPTS:
        print(f"usage: python -m workers.agents.scripted {{{','.join(SCRIPTS)}}} [args]", file=sys.stderr)
        return 2
    return run_script(args[0], args[1:], Path.cwd())


if __name__ == "__main__":
    sys.exit(main())
