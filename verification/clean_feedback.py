"""The feedback of a verification that ran hidden tests. The code under test ran beside them and could read them, so
whatever a visible test printed in that run may carry one, encoded past any quote check (base64, split, reversed).
When the feedback would show a visible test's output, that output comes from a second run of the whole test command
in the same checkout wiped to the base and the diff staged again without the hidden tests, whose source is covered
and whose report folder is a fresh one inside the first's (which it cannot see). The verdict, and the count of hidden
tests that failed, stay the first run's."""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from db.lifecycle import Verdict
from system.files import remove_tree
from system.git import GitError, checkout_git
from verification.channel import PASSES, RERUN
from verification.confined import fresh_folder, run_confined, sandboxed
from verification.digest import feedback_digest, is_hidden, mentions_hidden
from verification.environment import SetupFailed
from verification.judge import MORE_FAILING, Judgement, judge, verdict_only
from verification.patch import PatchRefused
from verification.report import Outcome
from verification.runner import TestRun, pytest_summary
from verification.staging import stage

if TYPE_CHECKING:
    from verification.verify import VerifySpec

CLEAN_FOLDER = "clean"
NOT_RERUN = "the failing visible tests' output is not shown: a run without the hidden tests could not be made"
UNCONFINED = (
    "the failing visible tests' output is not shown: the tests ran without a sandbox, where the code under test "
    "can read the hidden tests; these fail"
)
QUOTE_WITHHELD = "a reason that quotes the test run is withheld: the hidden tests ran beside the code under test"
PYTEST_EXIT_CODES = range(6)  # pytest.ExitCode: OK, TESTS_FAILED, INTERRUPTED, INTERNAL_ERROR, USAGE_ERROR, NO_TESTS
KNOWN_OUTCOMES = frozenset({*PASSES, RERUN, *(outcome.value for outcome in Outcome)})


@dataclass(frozen=True)
class HiddenRun:
    """The verdict's run, which had the hidden tests in its checkout: its judgement, what its runs wrote that a
    reason may quote (quoted_texts), the targets it was judged on and the hidden tests' paths."""

    judgement: Judgement
    quoted: Collection[str]
    targets: Sequence[str]
    hidden: Sequence[str]


def shows_visible_output(judgement: Judgement, hidden: Collection[str]) -> bool:
    """True when hidden tests were in the run and the feedback would show a visible test's output: only then is a
    second run worth its cost (a pass shows none, and without hidden tests there is nothing to give away)."""
    return bool(hidden) and any(not is_hidden(t, hidden) for t in judgement.broken + judgement.still_failing)


def clean_feedback(
    checkout: Path,
    diff: str,
    spec: VerifySpec,
    baseline: TestRun,
    report_dir: Path,
    cancelled: threading.Event | None,
    first: HiddenRun,
    secrets: Collection[str],
) -> str:
    """first's feedback, its visible tests' evidence (which fail, their assertions and tracebacks) from a run of diff
    that never had the hidden tests where it could read them. secrets: the quote check, kept as a second guard."""
    if not sandboxed(spec):  # the code under test can read the hidden tests' source wherever it lies
        failing = first.judgement.broken + first.judgement.still_failing
        visible = [t for t in failing if not is_hidden(t, first.hidden)]
        return _digest(_no_run(), first, _reason_only(f"{UNCONFINED}: {', '.join(visible[:10])}"), spec)
    try:
        run = _run_without_hidden(checkout, diff, spec, fresh_folder(report_dir / CLEAN_FOLDER), cancelled)
    except (PatchRefused, SetupFailed, GitError, OSError) as exc:
        return _digest(_no_run(), first, _reason_only(f"{NOT_RERUN}: {exc}"), spec)
    return _digest(run, first, judge(_visible_part(baseline, first.hidden), run, first.targets), spec, secrets)


def quoted_texts(*runs: TestRun | None) -> frozenset[str]:
    """Every text of runs beside the hidden tests that a reason may quote, all of them written by the code under test
    (it runs inside pytest): the test ids of the report and of the results channel, an outcome the channel gave
    that no pytest gives, the report's error (its file names, its root element), pytest's summary line, and an exit
    code no pytest gives (`os._exit(N)`: eight bits an attempt)."""
    texts: set[str] = set()
    for run in (run for run in runs if run is not None):
        channel = run.channel.outcomes if run.channel is not None else {}
        texts |= {*run.results, *channel, *(o for o in channel.values() if o not in KNOWN_OUTCOMES)}
        texts |= {run.report_error} if run.report_error else set()
        summary = pytest_summary(run.output)
        texts |= {summary[0], repr(summary[0])} if summary else set()
        if run.exit_code is not None and run.exit_code not in PYTEST_EXIT_CODES:  # a number the code chose
            texts |= {f"exit code {run.exit_code}", f"exited {run.exit_code}"}
    return frozenset(text for text in texts if text)


def unquoted(reasons: Sequence[str], quoted: Collection[str]) -> list[str]:
    """reasons without those quoting a text of quoted (quoted_texts), or counting the tests the run reported: any
    may carry a hidden test, encoded."""
    return [r for r in reasons if not r.endswith(MORE_FAILING) and not any(text in r for text in quoted)]


def counted(judgement: Judgement, known: Collection[str], hidden: Collection[str]) -> Judgement:
    """judgement without the failing hidden tests no one knows of (known: the baseline's tests and the targets): the
    code under test can add any number of them to the report, and the feedback counts them."""
    still = [t for t in judgement.still_failing if t in known or not is_hidden(t, hidden)]
    return replace(judgement, still_failing=still)


def speakable(judgement: Judgement, quoted: Collection[str], hidden: Collection[str]) -> Judgement:
    """judgement with the reasons its feedback may show when hidden tests ran beside it and no second run replaces
    them: those quoting the run give way to one line saying so (none for a reason about a hidden test, never shown)."""
    if not hidden:  # nothing to give away
        return judgement
    kept = unquoted(judgement.reasons, quoted)
    dropped = [reason for reason in judgement.reasons if reason not in kept and not mentions_hidden(reason, hidden)]
    return replace(judgement, reasons=[*kept, *([QUOTE_WITHHELD] if dropped else [])])


def wipe(checkout: Path) -> None:
    """Put checkout back to its base commit, keeping nothing a run left in it: every entry but its git pointer (shown
    read-only to every sandbox) removed, whatever it is (git's clean leaves a submodule's folder as it is), then the
    tracked files checked out again."""
    with os.scandir(checkout) as entries:
        names = [entry.name for entry in entries if entry.name != ".git"]
    for name in names:
        remove_tree(checkout / name)
    checkout_git("reset", "--hard", "--quiet", cwd=checkout)


def _run_without_hidden(
    checkout: Path, diff: str, spec: VerifySpec, folder: Path, cancelled: threading.Event | None
) -> TestRun:
    wipe(checkout)
    covering = replace(spec, hidden=(*spec.hidden, spec.hidden_tests)) if spec.hidden_tests else spec
    staged = stage(checkout, diff, covering, folder, cancelled)
    return run_confined(checkout, covering, folder, spec.test_cmd, cancelled, staged.config)


def _visible_part(baseline: TestRun, hidden: Sequence[str]) -> TestRun:
    """The baseline without the hidden tests, which the clean run cannot have: none of them is judged missing."""
    return replace(baseline, results={t: r for t, r in baseline.results.items() if not is_hidden(t, hidden)})


def _digest(run: TestRun, first: HiddenRun, clean: Judgement, spec: VerifySpec, secrets: Collection[str] = ()) -> str:
    return feedback_digest(run, _composed(first, clean), spec.feedback_limit, first.hidden, secrets)


def _composed(first: HiddenRun, clean: Judgement) -> Judgement:
    """first's judgement with its visible evidence taken from clean: its hidden tests stay (the digest only counts
    them), and every reason of it that quotes its run (a test id, what it printed) gives way to clean's."""
    return replace(
        first.judgement,
        reasons=[*unquoted(first.judgement.reasons, first.quoted), *clean.reasons],
        broken=_hidden_then_visible(first.judgement.broken, clean.broken, first.hidden),
        still_failing=_hidden_then_visible(first.judgement.still_failing, clean.still_failing, first.hidden),
    )


def _hidden_then_visible(hidden_from: list[str], visible_from: list[str], hidden: Sequence[str]) -> list[str]:
    return [t for t in hidden_from if is_hidden(t, hidden)] + [t for t in visible_from if not is_hidden(t, hidden)]


def _reason_only(reason: str) -> Judgement:
    return verdict_only(Verdict.FAILED, reason)  # its verdict gives way to the first run's


def _no_run() -> TestRun:
    return TestRun({}, None, False, "", 0.0)
