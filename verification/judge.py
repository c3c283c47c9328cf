"""Compare a candidate test run with the baseline of the same base commit and give a verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches

from db.lifecycle import Verdict
from verification.channel import disagreement, made_during
from verification.report import Outcome, TestResult
from verification.runner import TestRun, pytest_summary

NO_REPORT = "no test report was written; the run cannot be trusted"
NOTHING_TO_VERIFY = "nothing to verify: no test failed at the base and the diff adds no test"
NO_TESTS_COLLECTED = 5  # pytest's exit code (pytest.ExitCode.NO_TESTS_COLLECTED)
SHOWN_IDS = 10
MORE_FAILING = "more tests that should pass do not"  # after "... and N": a count of the ids the run wrote
NEAR = 0.8  # difflib's similarity for a "did you mean": a typo or two in an id of twenty characters


@dataclass
class Judgement:
    """The verdict on one candidate run and the evidence for it."""

    verdict: Verdict
    reasons: list[str]
    fail_to_pass: list[str]
    pass_to_pass: int
    broken: list[str]
    still_failing: list[str]
    flaky: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    weak: bool = False


def judge(
    baseline: TestRun, candidate: TestRun, targets: Sequence[str] = (), *, rerun: TestRun | None = None
) -> Judgement:
    """Judge candidate against baseline; targets are the tests that must pass (default: all failing at base)."""
    early = _run_problem(baseline, candidate, targets)
    if early is not None:
        return early
    runs = [run for run in (candidate, rerun) if run is not None]
    forged = [reason for run in runs if (reason := untrusted_report(run, baseline))]
    if forged:
        return verdict_only(Verdict.GAMED, forged[0])
    return _compare(baseline, candidate, list(targets) or baseline.failures, rerun)


def verdict_only(verdict: Verdict, *reasons: str, weak: bool = False) -> Judgement:
    """A judgement with no per-test evidence."""
    return Judgement(verdict, list(reasons), [], 0, [], [], weak=weak)


def _run_problem(baseline: TestRun, candidate: TestRun, targets: Sequence[str]) -> Judgement | None:
    if baseline.error:
        return verdict_only(Verdict.ERROR, f"the baseline run failed: {baseline.error}")
    if candidate.error:
        return verdict_only(Verdict.ERROR, candidate.error)
    if candidate.report_found and baseline.report_found:
        return None
    if candidate.report_found:
        return verdict_only(Verdict.ERROR, "the baseline has no test report but this run has; recompute it")
    if baseline.report_found:
        return _report_vanished(candidate)
    if candidate.expects_report or baseline.expects_report:
        return verdict_only(Verdict.ERROR, NO_REPORT, *_report_error(candidate))
    return _by_exit_code(baseline, candidate, targets)


def report_disagrees(run: TestRun) -> str | None:
    """Why run's report cannot be pytest's own: it lists more passes than the summary pytest printed.

    Code under test runs inside pytest and can rewrite the report (an atexit hook, then os._exit(0)), but it
    cannot take back the summary line pytest already wrote to the output. The report never legitimately has
    more passes: it merges a test's phases into its worst outcome, while the summary counts each.
    """
    summary = pytest_summary(run.output) if run.report_found else None
    if summary is None:
        return None
    line, counts = summary
    printed = sum(n for word, n in counts.items() if word.endswith("passed"))  # passed, xpassed, subtests passed
    reported = sum(1 for result in run.results.values() if result.ok)
    if reported <= printed:
        return None
    return (
        f"the test report lists {reported} passed tests but pytest's own summary says {line!r}: "
        "the report was changed after pytest wrote it"
    )


def untrusted(run: TestRun, baseline: TestRun | None) -> str | None:
    """Why run's outcome cannot be read from its report alone (a merge build's, judged with no baseline but the one
    its entry was verified against, if any): the report it was to write is missing, disagrees with pytest's summary
    or Fleet's plugin, or the command's exit code says otherwise (a step after the tests, a type check or a lint,
    failed)."""
    if run.expects_report and not run.report_found:
        return " ".join([f"{NO_REPORT} (exit code {run.exit_code})", *_report_error(run)])
    return untrusted_report(run, baseline) or next(iter(_exit_mismatch(run)), None)


def untrusted_report(run: TestRun, baseline: TestRun | None) -> str | None:
    """Why run's results are not pytest's own on the checkout as it was staged: a report rewritten, or tests and
    conftests the code under test wrote while they ran. What the base's own run wrote as it ran (a suite that
    generates test modules from data) is the repository's doing; without a baseline, what is written is not known."""
    written = [path for path in run.written if baseline is not None and path not in baseline.written]
    return report_disagrees(run) or channel_disagrees(run) or made_during(written)


def channel_disagrees(run: TestRun) -> str | None:
    """Why a pytest run's report disagrees with what Fleet's plugin saw (verification/channel.py)."""
    if run.channel is None or not (run.report_found and run.expects_report):
        return None
    return disagreement(run.channel, run.results)


def _report_vanished(candidate: TestRun) -> Judgement:
    if candidate.exit_code == 0:
        return verdict_only(
            Verdict.GAMED,
            "the test command exited 0 without writing the test report the baseline wrote: "
            "the run was cut short (e.g. os._exit(0)), so nothing was verified",
            *_report_error(candidate),
        )
    # The diff is the only difference from a baseline that did write a report, so the diff broke the run.
    return verdict_only(
        Verdict.FAILED,
        f"the test run crashed (exit code {candidate.exit_code}) before writing its report",
        *_report_error(candidate),
    )


def _report_error(run: TestRun) -> list[str]:
    return [f"the report is unreadable: {run.report_error}"] if run.report_error else []


def _by_exit_code(baseline: TestRun, candidate: TestRun, targets: Sequence[str]) -> Judgement:
    if targets:
        return verdict_only(Verdict.ERROR, "the ticket names tests but the test command writes no report")
    if candidate.exit_code != 0:
        return verdict_only(Verdict.FAILED, f"the test command exited {candidate.exit_code}")
    if baseline.exit_code == 0:
        return verdict_only(Verdict.FAILED, NOTHING_TO_VERIFY)
    return verdict_only(
        Verdict.PASSED,
        "the test command failed at the base and succeeds now; it writes no per-test report, "
        "so this check is weaker (only the exit code was compared)",
        weak=True,
    )


def _compare(baseline: TestRun, candidate: TestRun, targets: list[str], rerun: TestRun | None) -> Judgement:
    base, now = baseline.results, candidate.results
    fail_to_pass = [
        t for t in targets if target_status(base, now, t) is Outcome.PASSED and status(base, t) is not Outcome.PASSED
    ]
    still = [t for t in targets if target_status(base, now, t) is not Outcome.PASSED]
    still += [t for t, r in now.items() if t not in base and r.bad and t not in still]
    broken = [t for t, r in base.items() if r.ok and status(now, t) is not Outcome.PASSED]
    flaky = _flips(rerun, broken + still)
    broken = [t for t in broken if t not in flaky]
    judgement = Judgement(
        verdict=Verdict.FAILED,
        reasons=_exit_mismatch(candidate) + _describe(base, now, still, broken),
        fail_to_pass=fail_to_pass,
        pass_to_pass=sum(1 for t, r in base.items() if r.ok and status(now, t) is Outcome.PASSED),
        broken=broken,
        still_failing=still,
        flaky=flaky,
        flags=[f"flaky (failed, then passed on a rerun): {_ids(flaky)}"] if flaky else [],
    )
    if not targets and not _adds_passing_tests(base, now):
        judgement.reasons.append(NOTHING_TO_VERIFY)
    if not judgement.reasons:
        judgement.verdict = Verdict.PASSED
    return judgement


def status(results: Mapping[str, TestResult], test_id: str) -> Outcome | None:
    """The outcome of test_id; a file id without `::` stands for all tests in that file; None when missing."""
    result = results.get(test_id)
    if result is not None:
        return result.outcome
    if "::" in test_id:
        return None
    return _worst([r for t, r in results.items() if t.startswith(test_id + "::")])


def target_status(base: Mapping[str, TestResult], now: Mapping[str, TestResult], target: str) -> Outcome | None:
    """The outcome of a target now. One that names several tests of the base (a file, a class, a test whose
    parameters make several ids) is missing when one of them is: code that drops the failing case from the data
    a test is parametrized with would otherwise pass it."""
    if target in base or target in now:
        return status(now, target)
    held = [t for t in base if covers(target, t)]
    if any(t not in now for t in held):
        return None
    return _worst([r for t, r in now.items() if covers(target, t)])


def covers(target: str, test_id: str) -> bool:
    """True when target names test_id: the id itself, or a file, class or parametrised test holding it."""
    return test_id == target or test_id.startswith((f"{target}::", f"{target}["))


def _worst(inside: list[TestResult]) -> Outcome | None:
    if not inside:
        return None
    if any(r.bad for r in inside):
        return Outcome.FAILED
    return Outcome.PASSED if all(r.ok for r in inside) else Outcome.SKIPPED


def _flips(rerun: TestRun | None, suspects: list[str]) -> list[str]:
    if rerun is None or not rerun.report_found:
        return []
    return [t for t in suspects if status(rerun.results, t) is Outcome.PASSED]


def _exit_mismatch(run: TestRun) -> list[str]:
    if run.exit_code == 0 and run.failures:
        return ["the test command exited 0 although the report has failures; the run is not trusted"]
    if run.exit_code != 0 and not run.failures:
        collected = " (pytest's code for no tests collected)" if run.exit_code == NO_TESTS_COLLECTED else ""
        return [f"the test command exited {run.exit_code}{collected} although the report has no failure; not trusted"]
    return []


def _describe(
    base: Mapping[str, TestResult], now: Mapping[str, TestResult], still: list[str], broken: list[str]
) -> list[str]:
    reasons = [_still_reason(base, now, t) for t in still[:SHOWN_IDS]]
    if len(still) > SHOWN_IDS:
        reasons.append(f"... and {len(still) - SHOWN_IDS} {MORE_FAILING}")
    if broken:
        reasons.append(f"{len(broken)} tests that passed at the base no longer pass: {_ids(broken)}")
    return reasons


def _still_reason(base: Mapping[str, TestResult], now: Mapping[str, TestResult], test_id: str) -> str:
    outcome = target_status(base, now, test_id)
    gone = [t for t in base if t != test_id and covers(test_id, t) and t not in now]
    if outcome is None and status(base, test_id) is None and not gone:
        return f"{test_id} was not found in the test results, at the base or with the diff{nearest(test_id, now)}"
    if outcome is None:
        return f"{gone[0] if gone else test_id} was not found in the test results"
    message = now[test_id].message.strip().splitlines() if test_id in now else []
    return f"{test_id} {outcome.value}" + (f": {message[0]}" if message else "")


def nearest(test_id: str, results: Mapping[str, TestResult]) -> str:
    """The "did you mean" that names the test id closest to a missing one, or "" when none is close."""
    path, _, name = test_id.partition("::")
    in_file = {t.partition("::")[2]: t for t in results if t.partition("::")[0] == path}
    if name and in_file:  # the names alone: a shared path would make any two of its tests look alike
        found = [in_file[n] for n in get_close_matches(name, list(in_file), n=1, cutoff=NEAR)]
    else:
        found = get_close_matches(test_id, list(results), n=1, cutoff=NEAR)
    return f" (did you mean {found[0]}?)" if found else ""


def _adds_passing_tests(base: Mapping[str, TestResult], now: Mapping[str, TestResult]) -> bool:
    return not any(r.bad for r in base.values()) and any(r.ok for t, r in now.items() if t not in base)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" (+{len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")


def under_test_only(visible: TestRun, suspects: Sequence[str]) -> str | None:
    """Why tests that failed with the runner's variables hidden but pass with them visible are gamed."""
    flipped = [t for t in suspects if status(visible.results, t) is Outcome.PASSED]
    if not flipped:
        return None
    return (
        f"test-aware code: {_ids(flipped)} failed twice with the test runner's variables hidden from the code "
        "under test and passed with them visible: the code behaves differently under test; fix the behaviour "
        "for every caller"
    )
