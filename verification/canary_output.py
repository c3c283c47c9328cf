"""pytest's terminal output with Fleet's canaries (verification/canary.py) taken out: their failure blocks, the lines
naming them, their progress marks, and their share of the collected and summary counts. What is left reads as the
run of the repository's own tests, which is what users and agents see."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_BLOCK_HEADER = re.compile(r"^_{3,} .+ _{3,}$")
_SECTION = re.compile(r"^={3,}.*={3,}$|^- generated xml file: ")
_EMPTIED = re.compile(r"^={3,} (FAILURES|ERRORS|short test summary info) ={3,}$")
_PROGRESS = re.compile(r"^(?P<path>\S+\.py )?(?P<marks>[.FEsxXR]+)(?P<rest>\s*\[\s*\d+%\])?$")
_VERBOSE = re.compile(r"^(?P<id>\S+::\S+) [A-Z]+\b.*\[\s*\d+%\]$")
_PERCENT = re.compile(r"\[\s*\d+%\]$")
_COLLECTED = re.compile(r"\bcollected (\d+) items?\b|\b(\d+) selected\b")
_SUMMARY = re.compile(r"^=*\s*\d+ [a-z ]+(?:, \d+ [a-z ]+)* in [\d.]+s\b")
_COUNTS = re.compile(r"\d+ [a-z ]+?(?:, \d+ [a-z ]+?)*(?= in [\d.]+s)")
_STOPPED = re.compile(r"^!{3,} stopping after \d+ failures !{3,}$")
_RULE = re.compile(r"^={3,} .+ ={3,}$")


@dataclass(frozen=True)
class Collected:
    """What pytest collected of a run that stops at failures: canaries it collected that never ran (the run stopped
    before them), its own tests (None: those that ran), and whether a canary's failure stopped it (the last test)."""

    unrun: int = 0
    own: int | None = None
    stopped: bool = False


@dataclass
class _Marks:
    order: Sequence[str]
    canaries: set[str]
    total: int
    reruns: list[str] = field(default_factory=list)
    bare: int | None = None  # the progress line a canary's mark ended with no percentage after it


def scrub_output(output: str, order: Sequence[str], gone: Mapping[str, str], collected: Collected = Collected()) -> str:
    """output without the tests of gone, each the word pytest's summary counted it under (`failed`, `error`);
    order: every test id of the run (gone included) in the order it ran."""
    if not gone and not collected.unrun:
        return output
    names = [re.compile(rf"(?<![\w\[]){re.escape(test_id.rsplit('::', 1)[-1])}(?![\w\[])") for test_id in gone]
    lines = _without_blocks(output.split("\n"), names)
    own = collected.own if collected.own is not None else sum(1 for t in order if t not in gone)
    marks = _Marks(order, set(gone), max(own, 1))
    lines = _without_marks(lines, marks)
    if collected.stopped:  # pytest writes neither its stop line nor the last percentage when the run went on
        lines = _with_last_percentage([line for line in lines if not _STOPPED.match(line)], marks, output)
    counted = Counter(gone.values()) + Counter(marks.reruns)
    lines = [_recounted(line, len(gone) + collected.unrun, counted) for line in lines]
    return "\n".join(_without_empty_sections(lines))


def _with_last_percentage(lines: list[str], marks: _Marks, output: str) -> list[str]:
    """lines with the percentage pytest writes after the last mark, as far right as its rules reach."""
    if marks.bare is None:
        return lines
    width = next((len(line) for line in output.split("\n") if _RULE.match(line)), 80)
    marked = lines[marks.bare].rstrip()
    done = sum(1 for t in marks.order if t not in marks.canaries)
    lines[marks.bare] = marked + f" {_percent(done, marks.total)}".rjust(width - 1 - len(marked))
    return lines


def _without_blocks(lines: list[str], names: list[re.Pattern[str]]) -> list[str]:
    """Drop each line naming a canary, and a failure block headed by one up to the next block or section."""
    kept: list[str] = []
    skipping = False
    for line in lines:
        if _BLOCK_HEADER.match(line) or _SECTION.match(line):
            skipping = False
        named = any(name.search(line) for name in names)
        if named and _BLOCK_HEADER.match(line):
            skipping = True
        if not (skipping or named):
            kept.append(line)
    return kept


def _without_marks(lines: list[str], marks: _Marks) -> list[str]:
    """Drop the canaries' progress marks and count the percentages again without them: each mark stands for the
    next test in order (a file's line starts at its first test); a verbose line names its test. A canary's rerun
    marks (pytest-rerunfailures) go into reruns."""
    order, canaries, total = marks.order, marks.canaries, marks.total
    cursor, done, named = 0, 0, set[str]()
    starts: dict[str, int] = {}
    for i, test_id in enumerate(order):
        starts.setdefault(test_id.partition("::")[0], i)
    kept: list[str] = []
    for line in lines:
        progress = _PROGRESS.match(line)
        if progress is None:
            verbose = _VERBOSE.match(line)
            named |= {verbose["id"]} if verbose else set()
            kept.append(_PERCENT.sub(_percent(len(named), total), line) if verbose else line)
            continue
        if progress["path"]:
            path = progress["path"].strip()
            cursor = max(cursor, starts.get(path, cursor))
        kept_marks = ""
        for mark in progress["marks"]:
            canary = cursor < len(order) and order[cursor] in canaries
            kept_marks += "" if canary else mark
            marks.reruns += ["rerun"] if canary and mark == "R" else []
            cursor += mark != "R"  # a rerun's mark (pytest-rerunfailures) comes before its test's own
        done += len(kept_marks)
        rest = _PERCENT.sub(_percent(done, total), progress["rest"] or "")
        if len(kept_marks) < len(progress["marks"]) and not rest:
            marks.bare = len(kept)
        padding = " " * (len(progress["marks"]) - len(kept_marks))
        kept.append(f"{progress['path'] or ''}{kept_marks}{padding}{rest}")
    return kept


def _percent(done: int, total: int) -> str:
    return f"[{min(done * 100 // total, 100):3d}%]"


def _recounted(line: str, tests: int, counted: Counter[str]) -> str:
    """The `collected` line with tests fewer, the summary line with counted fewer under each word, else line."""
    if _COLLECTED.search(line):
        return _COLLECTED.sub(lambda m: m.group(0).replace(_number(m), str(int(_number(m)) - tests), 1), line)
    counts = _COUNTS.search(line) if _SUMMARY.match(line) else None
    if counts is None:
        return line
    parts = []
    for part in counts.group(0).split(", "):
        number, word = part.split(" ", 1)
        left = int(number) - counted[word.removesuffix("s")]
        if left > 0:
            parts.append(f"{left} {'error' if word == 'errors' and left == 1 else word}")
    return _centred(line, line[: counts.start()] + ", ".join(parts) + line[counts.end() :])


def _centred(before: str, line: str) -> str:
    """line laid out between `=` rules of before's width, as pytest draws its summary line."""
    if not before.startswith("="):
        return line
    title = line.strip("= ")
    side = "=" * max((len(before) - len(title) - 2) // 2, 1)
    ruled = f"{side} {title} {side}"
    return ruled + "=" * max(len(before) - len(ruled), 0)


def _number(match: re.Match[str]) -> str:
    return match.group(1) or match.group(2)


def _without_empty_sections(lines: list[str]) -> list[str]:
    kept: list[str] = []
    for i, line in enumerate(lines):
        following = next((x for x in lines[i + 1 :] if x.strip()), "") if _EMPTIED.match(line) else None
        if following is not None and (not following or _SECTION.match(following) or _SUMMARY.match(following)):
            continue
        kept.append(line)
    return kept
