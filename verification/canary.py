"""Canaries: tests Fleet plants to fail in a verification's run, to catch code that rewrites pytest's verdicts.

The code under test runs inside pytest and can patch it (`Function.runtest`, `_pytest.runner.call_and_report`,
`TestReport`) so that every test passes, reaching it by a name no static check reads (`codecs.decode(..., "rot13")`).
Before the run, Fleet appends to one or two of the base's test files a test that must fail, named after the last test
of that file and given a body drawn at random, so the code cannot tell it from the repository's own tests without
knowing Fleet. A canary reported passing, skipped or xfailed, or missing while the test beside it passed, means the
run's results were rewritten. Canaries are then withdrawn from the run (results, channel, exit code, output), so an
honest diff's verdict, counts and feedback are as if none had been planted (verification/canary_output.py).

A run that stops at its first failures (`-x`, `--maxfail`) gets one canary, after the test its pytest collected last
at the base: it runs after every other test, so its failure stops nothing and uses up none of the failures allowed
before them. Fleet's plugin tells which test was collected last; when that was not the canary (the diff added tests
after it) and the canary failed or did not run, the run is taken again without it.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shlex
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from db.lifecycle import Verdict
from system.files import read_within, write_over
from verification.canary_output import Collected, scrub_output
from verification.channel import Channel
from verification.confined import PLAIN_PYTEST, run_confined
from verification.judge import Judgement
from verification.report import Outcome, TestResult
from verification.runner import TestRun

if TYPE_CHECKING:
    from verification.verify import VerifySpec

CANARIES = 2
MAX_SOURCE_BYTES = 1_000_000  # a test file larger than this is not worth parsing for a canary
TESTS_FAILED = 1  # pytest's exit code when a test failed (pytest.ExitCode.TESTS_FAILED)
REWRITTEN = "a test Fleet planted to fail was reported {outcome}: the code under test rewrites test results"
HIDDEN = (
    "a test Fleet planted to fail is missing from the results while the test beside it passed: the code under test "
    "hides test results"
)
# Options that stop a run at its first failures: a canary then runs after every other test, or not at all.
_STOPS_EARLY = re.compile(r"(?<![\w-])(-[a-wyzA-Z]*x\w*|--exitfirst|--maxfail\S*)(?![\w-])")
# Stepwise runs stop at the first failure and remember it for the next run, which a canary must not be.
_STEPWISE = re.compile(r"(?<![\w-])(--sw|--sw-skip|--stepwise\S*)(?![\w-])")
# The header line of a plugin that runs the tests in a new random order each time (pytest-randomly, random-order).
_RANDOM_ORDER = re.compile(r"^Using --random(?:ly-seed|-order)", re.MULTILINE)
_WORDS = (
    "empty", "unicode", "negative", "large", "none", "twice", "nested", "order", "copy", "default", "repeat",
    "zero", "boundary", "mixed", "reversed", "long", "single", "missing", "invalid", "roundtrip", "spaces", "bytes",
    "float", "int", "list", "dict", "tuple", "string", "keys", "values", "items", "first", "last", "many", "small",
    "sorted", "unsorted", "duplicates", "whitespace", "newline", "tabs", "limit", "overflow", "precision", "types",
    "error", "errors", "message", "format", "prefix", "suffix", "case", "upper", "lower", "path", "relative",
    "absolute", "cache", "again", "inplace", "generator", "iterator", "lazy", "strict", "loose", "identity",
)  # fmt: skip
# Bodies that fail whatever the code under test does, asserting on no literal a flag would compare with a diff.
_BODIES = (
    "    items = [n * 2 for n in range({k})]\n    assert len(items) == {k} + 1\n",
    "    total = sum(range({k}))\n    assert total == {k} * ({k} + 1) // 2\n",
    "    text = ''.join(str(n) for n in range({k}))\n    assert text.endswith(str({k}))\n",
    "    seen = {{n % {k} for n in range({k} * 2)}}\n    assert {k} in seen\n",
    "    values = list(range({k}))\n    assert values[-1] == len(values)\n",
)


@dataclass(frozen=True)
class Canary:
    """One planted test: its id, and the base's test beside it (whose name it extends, for `-k`). strict: the sibling
    is a plain module-level function, selected alike, so the canary missing or skipped while it passed is a rewrite
    (a method's class has names and markers of its own that may select it alone). last: planted to run after every
    other test, in a run that stops at its first failures; original: its file before it was planted."""

    test_id: str
    sibling: str
    strict: bool = True
    last: bool = False
    original: str = field(default="", repr=False, compare=False)


def plant(checkout: Path, baseline: TestRun, test_cmd: str, config: str | None) -> tuple[Canary, ...]:
    """Append canaries to test files of checkout the baseline ran whole, and return them; none when the command is
    not a single pytest run (a compound command's exit code). A file the command names test ids of gets none: the
    canary's own id would have to be added to the command, which the code under test reads in sys.argv. In a run that
    stops at its first failures, one canary after the test the baseline's pytest collected last, when one process
    ran its tests in an order drawn by no plugin: it then runs after every other test, so it stops none early."""
    if not (baseline.report_found and PLAIN_PYTEST.match(test_cmd)):
        return ()
    stops = _stops_early(checkout, test_cmd, config)
    if stops is None or (stops and not _runs_in_order(baseline)):
        return ()
    partly = _named_in_ids(test_cmd)
    candidates = [c for c in (_collected_last(baseline) if stops else _last_tests(baseline)) if c[0] not in partly]
    planted: list[Canary] = []
    while candidates and len(planted) < (1 if stops else CANARIES):  # drawn one at a time: a file is read when drawn
        path, sibling = candidates.pop(secrets.randbelow(len(candidates)))
        source = _source(checkout, path)
        strict = _plain_function(source, sibling) if source is not None else None
        if source is not None and strict is not None:
            planted += filter(None, [_append(checkout, path, sibling, source, test_cmd, strict)])
    return tuple(replace(canary, last=stops) for canary in planted)


def run_with_canaries(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None,
    config: str | None,
    baseline: TestRun,
) -> tuple[TestRun, str | None]:
    """The test run of a diff with canaries planted, then withdrawn, and why its results cannot be trusted (None:
    every canary failed, or none could be planted)."""
    canaries = plant(checkout, baseline, spec.test_cmd, config)
    run = run_confined(checkout, spec, report_dir, spec.test_cmd, cancelled, config)
    if any(_out_of_order(c, run) for c in canaries):  # it may have stopped the run, or been counted, or not
        _unplant(checkout, canaries)
        return withdraw((), run_confined(checkout, spec, report_dir, spec.test_cmd, cancelled, config)), None
    judged = tuple(c for c in canaries if not c.last or c.test_id in run.results or not run.failures)
    complete = run.error is None and run.report_found  # a run cut short may not have reached a canary
    return withdraw(canaries, run), tripped(judged, run.results) if complete else None


def _out_of_order(canary: Canary, run: TestRun) -> bool:
    """True when a canary planted to run last was not the test one pytest process collected last (the diff added
    tests after it, or the order changed), and it failed or is missing: the run is then no run without it."""
    channel = run.channel
    ran_last = channel is not None and channel.sessions == 1 and channel.last == canary.test_id
    found = run.results.get(canary.test_id)
    return canary.last and not ran_last and (found is None or found.bad)


def _unplant(checkout: Path, canaries: tuple[Canary, ...]) -> None:
    for canary in canaries:
        write_over(checkout / canary.test_id.partition("::")[0], canary.original.encode("utf-8"))


def tripped(canaries: tuple[Canary, ...], results: dict[str, TestResult]) -> str | None:
    """Why the run's results cannot be trusted: a canary did not fail. A canary missing or skipped while its sibling
    did not pass is forgiven (the run stopped, the file was skipped or not collected)."""
    for canary in canaries:
        found = results.get(canary.test_id)
        if found is not None and found.bad:
            continue
        beside = canary.strict and _passed(results, canary.sibling)
        if found is not None and (found.ok or beside):
            return REWRITTEN.format(outcome="passing" if found.ok else found.outcome.value)
        if found is None and beside:
            return HIDDEN
    return None


def judge_canaries(judgement: Judgement, rewritten: str | None) -> None:
    """Make judgement gamed when the canaries say the run's results were rewritten: that reason first, unless it was
    gamed already for a reason naming more precisely what was changed (a report, pytest's summary)."""
    if rewritten is None:
        return
    if judgement.verdict is Verdict.GAMED:
        judgement.reasons.append(rewritten)
        return
    judgement.verdict = Verdict.GAMED
    judgement.reasons.insert(0, rewritten)


def withdraw(canaries: tuple[Canary, ...], run: TestRun) -> TestRun:
    """run as if no canary had been planted: without their results, outcomes on the channel and output, and with
    the exit code pytest gives when nothing else failed; without the test collected last, which only a baseline
    keeps (a canary's, in a run that stops early)."""
    if not canaries:
        return replace(run, channel=_without(run.channel, set()))
    ids = {canary.test_id for canary in canaries}
    gone = [result for test_id, result in run.results.items() if test_id in ids]
    results = {test_id: result for test_id, result in run.results.items() if test_id not in ids}
    exit_code = run.exit_code
    counted_as = {r.test_id: _counted_as(r, run.channel) for r in gone}
    # Only a canary's own failure is forgiven: an error on it may be a module or session fixture's teardown, which
    # pytest reports on the last test run, and the code under test may have broken it.
    canaries_failed = bool(gone) and all(r.outcome is Outcome.FAILED for r in gone)
    if exit_code == TESTS_FAILED and canaries_failed and not any(r.bad for r in results.values()):
        exit_code = 0
    return replace(
        run,
        results=results,
        exit_code=exit_code,
        output=scrub_output(run.output, list(run.results), counted_as, _collected(canaries, run)),
        channel=_without(run.channel, ids),
    )


def _collected(canaries: tuple[Canary, ...], run: TestRun) -> Collected:
    """What pytest collected of a run with a canary planted to run last (collected last, or the run was taken
    again without it): the canary, unrun when the run stopped before it, and the repository's own tests."""
    last = [c for c in canaries if c.last]
    if not last or run.channel is None or run.channel.collected is None:
        return Collected()
    unrun = sum(1 for c in last if c.test_id not in run.results)
    stopped = any(run.results[c.test_id].outcome is Outcome.FAILED for c in last if c.test_id in run.results)
    return Collected(unrun, run.channel.collected - len(last), stopped)


def _counted_as(result: TestResult, channel: Channel | None) -> str:
    """The word pytest's summary counted result under: the plugin's outcome when the report says otherwise (a
    report rewritten after pytest printed its summary), else the report's."""
    seen = channel.outcomes.get(result.test_id) if channel is not None else None
    if seen is None or (seen == "failed") is result.bad:
        return result.outcome.value
    return seen


def _passed(results: dict[str, TestResult], test_id: str) -> bool:
    found = results.get(test_id)
    return found is not None and found.outcome is Outcome.PASSED


def _without(channel: Channel | None, ids: set[str]) -> Channel | None:
    if channel is None:
        return None
    return Channel(channel.sessions, {k: v for k, v in channel.outcomes.items() if k not in ids})


def _last_tests(baseline: TestRun) -> list[tuple[str, str]]:
    """(file, its last test) for each Python test file of the baseline whose last test ran and may be a function of
    it or a method of a class in it, parametrized or not (a canary appended to the module runs after every test of
    the file)."""
    last: dict[str, tuple[str, TestResult]] = {}
    for test_id, result in baseline.results.items():
        path, _, name = test_id.partition("::")
        last[path] = (name, result)
    return [
        (path, name)
        for path, (name, result) in last.items()
        if path.endswith(".py") and _python_names(name) and result.outcome in (Outcome.PASSED, Outcome.FAILED)
    ]


def _collected_last(baseline: TestRun) -> list[tuple[str, str]]:
    """(file, test) of the test the baseline's pytest collected last, when it may be a function of the file or a
    method of a class in it (whether it ran or not: a run stopped at a failure may not have reached it)."""
    last = baseline.channel.last if baseline.channel is not None else None
    path, _, name = (last or "").partition("::")
    return [(path, name)] if path.endswith(".py") and _python_names(name) else []


def _python_names(test: str) -> list[str]:
    """The classes and the function a test's name (after its file) is made of, without its parameters (`[1-a]`);
    empty when they are not Python names (a test a plugin collects from something else)."""
    names = test.split("::")
    names[-1] = names[-1].split("[", 1)[0] if names[-1].endswith("]") else names[-1]
    return names if all(name.isidentifier() for name in names) else []


def _runs_in_order(baseline: TestRun) -> bool:
    """True when the baseline's tests ran one after another in one process, in an order no plugin draws anew."""
    channel = baseline.channel
    return channel is not None and channel.sessions == 1 and not _RANDOM_ORDER.search(baseline.output)


def _source(checkout: Path, path: str) -> str | None:
    data = read_within(checkout, path, MAX_SOURCE_BYTES + 1)
    if data is None or len(data) > MAX_SOURCE_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _plain_function(source: str, sibling: str) -> bool | None:
    """True when sibling is a module-level function of source without decorators or parameters (no marker a canary
    would lack), False when it is one with them or a method of a class (nested or not), None when source defines
    no such test (a canary would not follow it)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # nested deeper than the parser goes
        return None
    *owners, function = _python_names(sibling)
    body: list[ast.stmt] = tree.body
    for owner in owners:
        body = next((n.body for n in reversed(body) if isinstance(n, ast.ClassDef) and n.name == owner), [])
    found = [n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function]
    if not found:
        return None
    return not owners and not found[-1].decorator_list and not sibling.endswith("]")


def _append(checkout: Path, path: str, sibling: str, source: str, test_cmd: str, strict: bool) -> Canary | None:
    name = _name(_python_names(sibling)[-1], source, test_cmd)
    if name is None:
        return None
    k = 2 + secrets.randbelow(7)
    body = secrets.choice(_BODIES).format(k=k)
    text = source + ("" if source.endswith("\n") else "\n") + f"\n\ndef {name}():\n{body}"
    try:
        write_over(checkout / path, text.encode("utf-8"))
    except OSError:
        return None
    return Canary(f"{path}::{name}", f"{path}::{sibling}", strict, original=source)


def _name(sibling: str, source: str, test_cmd: str) -> str | None:
    """The sibling's name and a word (so `-k` selects both alike), ending like the sibling when its name does not
    start with `test` (a custom `python_functions` glob such as `*_test`); None when no word is free."""
    words = [w for w in _WORDS if w not in sibling]
    tail = "" if sibling.startswith("test") else "_" + sibling.rsplit("_", 1)[-1]
    terms = _keyword_terms(test_cmd)
    while words:
        drawn = [words.pop(secrets.randbelow(len(words))) for _ in range(min(1 + secrets.randbelow(2), len(words)))]
        name = f"{sibling}_{'_'.join(drawn)}{tail}"
        named = any(t in name.lower() and t not in sibling.lower() for t in terms)  # a `-k "not ..."` would drop it
        if not named and f"def {name}(" not in source and name not in source:
            return name
    return None


def _named_in_ids(command: str) -> set[str]:
    """The files of the test ids command names (`tests/test_a.py::test_x`, `--deselect=tests/test_a.py::test_y`):
    pytest collects only some of their tests."""
    ids = [word.rpartition("=")[2] if word.startswith("-") else word for word in _words(command) if "::" in word]
    return {os.path.normpath(test_id.split("::", 1)[0]) for test_id in ids}


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _keyword_terms(command: str) -> set[str]:
    """The names a `-k` expression of command matches on (lowercase, as pytest compares them)."""
    words = _words(command)
    expressions = [b for a, b in zip(words, words[1:], strict=False) if a in ("-k", "--keyword")]
    expressions += [w.split("=", 1)[1] for w in words if w.startswith("--keyword=")]
    expressions += [w[2:] for w in words if w.startswith("-k") and len(w) > 2]
    terms = {term.lower() for text in expressions for term in re.findall(r"\w+", text)}
    return terms - {"and", "or", "not"}


def _stops_early(checkout: Path, test_cmd: str, config: str | None) -> bool | None:
    """True when the command or the pinned configuration may stop at a failure (`-x`, `--maxfail`), None when it
    runs stepwise (`--sw`), else False."""
    data = read_within(checkout, config, MAX_SOURCE_BYTES) if config else None
    text = f"{test_cmd}\n{data.decode('utf-8', 'replace') if data is not None else ''}"
    return None if _STEPWISE.search(text) else bool(_STOPS_EARLY.search(text))
