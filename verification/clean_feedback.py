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
from system.git import GitError, git
from verification.confined import fresh_folder, run_confined, sandboxed
from verification.digest import feedback_digest, is_hidden
from verification.environment import SetupFailed
from verification.judge import Judgement, judge, verdict_only
from verification.patch import PatchRefused
from verification.runner import TestRun
from verification.staging import stage

if TYPE_CHECKING:
    from verification.verify import VerifySpec

CLEAN_FOLDER = "clean"
NOT_RERUN = "the failing visible tests' output is not shown: a run without the hidden tests could not be made"
UNCONFINED = (
    "the failing visible tests' output is not shown: the tests ran without a sandbox, where the code under test "
    "can read the hidden tests; these fail"
)


@dataclass(frozen=True)
class HiddenRun:
    """The verdict's run, which had the hidden tests in its checkout: its judgement, the ids of its results, the
    targets it was judged on and the hidden tests' paths."""

    judgement: Judgement
    ids: Collection[str]
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


def wipe(checkout: Path) -> None:
    """Put checkout back to its base commit, keeping nothing a run left in it: every entry but its git pointer (shown
    read-only to every sandbox) removed, whatever it is (git's clean leaves a submodule's folder as it is), then the
    tracked files checked out again."""
    with os.scandir(checkout) as entries:
        names = [entry.name for entry in entries if entry.name != ".git"]
    for name in names:
        remove_tree(checkout / name)
    git("reset", "--hard", "--quiet", cwd=checkout)


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
    them), and every reason of it that names a visible test of its run (which may quote what it printed) gives way
    to clean's."""
    visible_ids = [t for t in first.ids if not is_hidden(t, first.hidden)]
    kept = [reason for reason in first.judgement.reasons if not any(t in reason for t in visible_ids)]
    return replace(
        first.judgement,
        reasons=[*kept, *clean.reasons],
        broken=_hidden_then_visible(first.judgement.broken, clean.broken, first.hidden),
        still_failing=_hidden_then_visible(first.judgement.still_failing, clean.still_failing, first.hidden),
    )


def _hidden_then_visible(hidden_from: list[str], visible_from: list[str], hidden: Sequence[str]) -> list[str]:
    return [t for t in hidden_from if is_hidden(t, hidden)] + [t for t in visible_from if not is_hidden(t, hidden)]


def _reason_only(reason: str) -> Judgement:
    return verdict_only(Verdict.FAILED, reason)  # its verdict gives way to the first run's


def _no_run() -> TestRun:
    return TestRun({}, None, False, "", 0.0)
