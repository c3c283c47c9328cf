"""The context pack: the prompt an agent reads, built when its attempt starts, once the baseline is known.

In order: the ticket and the previous attempt's feedback (as the policy composed them), the target tests and how
each fails at the base, how to run them, where to look, the repository's own instructions for agents. Over the
size bound, the last sections go first, and one line says what was cut.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from system.git import GitError, git
from verification.digest import is_hidden, targets_digest
from verification.runner import TestRun

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
TRACEBACK_FILE = re.compile(r"""(?:^|[\s"'(])([\w./-]+\.py)(?::\d+|", line \d+)""", re.M)
MAX_FILES = 15
CUT_NOTE = "\n[fleet] the context pack was cut to {limit} bytes: left out {what}.\n"


@dataclass(frozen=True)
class PackInput:
    """What the pack is built from; plain data, so the pack is a pure function of it."""

    prompt: str
    test_cmd: str
    targets: Sequence[str] = ()
    known: Sequence[str] = ()
    baseline: TestRun | None = None
    area: Sequence[str] = ()
    instructions: tuple[str, str] | None = None  # (file name, text)
    hidden: Sequence[str] = ()
    limit: int = 24_000


def targets_command(test_cmd: str, targets: Sequence[str]) -> str:
    """The test command for the targets alone (pytest takes node ids as arguments)."""
    return f"{test_cmd} {shlex.join(targets)}" if targets else test_cmd


def shown_targets(given: PackInput) -> list[str]:
    """The targets an agent may see: never a hidden test."""
    return [t for t in given.targets if not is_hidden(t, given.hidden)]


def build_pack(given: PackInput) -> str:
    """The whole prompt, within given.limit bytes."""
    visible = shown_targets(given)
    sections = [
        ("the ticket", given.prompt.rstrip() + "\n"),
        ("how the target tests fail", _failures(given, visible)),
        ("how to run the tests", _how_to_run(given, visible)),
        ("where to look", _where_to_look(given, visible)),
        ("the repository's instructions", _instructions(given)),
    ]
    return fit(sections, given.limit)


def fit(sections: list[tuple[str, str]], limit: int) -> str:
    """Join sections; while over limit, drop the last non-empty one (the first is only clipped), and say so."""
    kept = [(name, text) for name, text in sections if text]
    cut: list[str] = []
    while len(kept) > 1 and _size("\n".join(t for _, t in kept), cut, limit) > limit:
        cut.insert(0, kept.pop()[0])
    text = "\n".join(t for _, t in kept)
    note = CUT_NOTE.format(limit=limit, what=", ".join(cut)) if cut else ""
    room = limit - len(note.encode())
    if len(text.encode()) > room:
        note = CUT_NOTE.format(limit=limit, what=", ".join([*cut, f"the end of {kept[0][0]}"] if cut else ["its end"]))
        text = text.encode()[: max(0, limit - len(note.encode()))].decode(errors="ignore")
    return text + note


def _size(text: str, cut: list[str], limit: int) -> int:
    return len(text.encode()) + (len(CUT_NOTE.format(limit=limit, what=", ".join(cut)).encode()) if cut else 0)


def _failures(given: PackInput, visible: list[str]) -> str:
    if given.baseline is None or not visible:
        return ""
    digest = targets_digest("", given.baseline, visible, max(1000, given.limit // 3), given.hidden)
    body = digest.split("\n", 3)[3]  # after the verdict, the empty reason and the "Next:" line the heading says
    lines = ["## Tests that must pass, and how each fails at the base commit", "", body.rstrip()]
    known = [t for t in given.known if not is_hidden(t, given.hidden)]
    if known:
        lines += ["", "Failing before any change and not part of this ticket (known failures): " + _ids(known)]
    return "\n".join(lines) + "\n"


def _how_to_run(given: PackInput, visible: list[str]) -> str:
    lines = ["## How to run the tests", "", f"All: `{given.test_cmd}` (also in $FLEET_TEST_CMD)"]
    if visible:
        lines.append(f"The targets alone: `{targets_command(given.test_cmd, visible)}` (ids in $FLEET_TARGETS)")
    return "\n".join(lines) + "\n"


def _where_to_look(given: PackInput, visible: list[str]) -> str:
    files = traceback_files(given.baseline, visible) if given.baseline else []
    lines = []
    if files:
        lines.append("Files in the failing tracebacks: " + ", ".join(files))
    if given.area:
        lines.append("The ticket's area: " + ", ".join(given.area))
    return "## Where to look\n\n" + "\n".join(lines) + "\n" if lines else ""


def traceback_files(baseline: TestRun, tests: Sequence[str]) -> list[str]:
    """Relative paths named in the tests' failure tracebacks (absolute ones are outside the repository)."""
    found: list[str] = []
    for test_id in tests:
        found.append(test_id.split("::", 1)[0])
        result = baseline.results.get(test_id)
        if result is not None:
            found += [m for m in TRACEBACK_FILE.findall(result.details + "\n" + result.message) if _relative(m)]
    return list(dict.fromkeys(found))[:MAX_FILES]


def _relative(name: str) -> bool:
    return not name.startswith(("/", ".")) and "site-packages" not in name


def _instructions(given: PackInput) -> str:
    if given.instructions is None:
        return ""
    name, text = given.instructions
    return f"## The repository's instructions for agents ({name})\n\n{text.strip()}\n"


def read_instructions(mirror: Path, sha: str, named: str) -> tuple[str, str] | None:
    """The repository's agent instructions at sha: the file named in its settings, else AGENTS.md, else CLAUDE.md."""
    try:
        return _instructions_at(mirror, sha, named)
    except GitError:  # a commit the mirror lacks: no instructions, and nothing remembered
        return None


@functools.lru_cache(maxsize=64)
def _instructions_at(mirror: Path, sha: str, named: str) -> tuple[str, str] | None:
    """Asked of git once per commit in a process (a commit's files never change): one listing, one read."""
    wanted = (named,) if named else INSTRUCTION_FILES
    listing = git("--literal-pathspecs", "ls-tree", "-z", "--name-only", sha, "--", *wanted, cwd=mirror)
    present = set(listing.split("\0"))
    found = next((name for name in wanted if name in present), None)
    return (found, git("show", f"{sha}:{found}", cwd=mirror)) if found else None


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(ids[:10]) + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")
