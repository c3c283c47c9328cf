"""pytest's terminal output with Fleet's canaries (verification/canary.py) taken out: their failure blocks, the lines
naming them, their progress marks, and their share of the collected and summary counts. What is left reads as the
run of the repository's own tests, which is what users and agents see."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

_BLOCK_HEADER = re.compile(r"^_{3,} .+ _{3,}$")
_SECTION = re.compile(r"^={3,}.*={3,}$|^- generated xml file: ")
_EMPTIED = re.compile(r"^={3,} (FAILURES|ERRORS|short test summary info) ={3,}$")
_PROGRESS = re.compile(r"^(?P<path>\S+\.py )?(?P<marks>[.FEsxXR]+)(?P<rest>\s*\[\s*\d+%\])?$")
_VERBOSE = re.compile(r"^(?P<id>\S+::\S+) [A-Z]+\b.*\[\s*\d+%\]$")
_PERCENT = re.compile(r"\[\s*\d+%\]$")
_COLLECTED = re.compile(r"\bcollected (\d+) items?\b|\b(\d+) selected\b")
_SUMMARY = re.compile(r"^=*\s*\d+ [a-z ]+(?:, \d+ [a-z ]+)* in [\d.]+s\b")
_COUNTS = re.compile(r"\d+ [a-z ]+?(?:, \d+ [a-z ]+?)*(?= in [\d.]+s)")


def scrub_output(output: str, order: Sequence[str], gone: Mapping[str, str]) -> str:
    """output without the tests of gone, each the word pytest's summary counted it under (`failed`, `error`);
    order: every test id of the run (gone included) in the order it ran."""
    if not gone:
        return output
    names = [re.compile(rf"(?<![\w\[]){re.escape(test_id.rsplit('::', 1)[-1])}(?![\w\[])") for test_id in gone]
    lines = _without_blocks(output.split("\n"), names)
    reruns: list[str] = []
    lines = _without_marks(lines, order, set(gone), reruns)
    counted = Counter(gone.values()) + Counter(reruns)
    lines = [_recounted(line, len(gone), counted) for line in lines]
    return "\n".join(_without_empty_sections(lines))


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


def _without_marks(lines: list[str], order: Sequence[str], canaries: set[str], reruns: list[str]) -> list[str]:
    """Drop the canaries' progress marks and count the percentages again without them: each mark stands for the
    next test in order (a file's line starts at its first test); a verbose line names its test. A canary's rerun
    marks (pytest-rerunfailures) go into reruns."""
    total = max(sum(1 for t in order if t not in canaries), 1)
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
        marks = ""
        for mark in progress["marks"]:
            canary = cursor < len(order) and order[cursor] in canaries
            marks += "" if canary else mark
            reruns += ["rerun"] if canary and mark == "R" else []
            cursor += mark != "R"  # a rerun's mark (pytest-rerunfailures) comes before its test's own
        done += len(marks)
        rest = _PERCENT.sub(_percent(done, total), progress["rest"] or "")
        kept.append(f"{progress['path'] or ''}{marks}{' ' * (len(progress['marks']) - len(marks))}{rest}")
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
