"""Verify one agent diff: apply it to a clean base checkout, restore protected files, run the tests, judge.

Decisions about pytest (see research A1-A3 for the attacks they answer):
- Test files and test configuration (DEFAULT_PROTECT) are put back to the base before the run, so a
  conftest.py hook, an ini `addopts`, a deleted or edited test cannot change what runs.
- pytest is pinned to the base's configuration file with `-c <file> --rootdir=<checkout>` (an empty
  ini when the base has none, so no config above the checkout is read). `-o addopts=""` is not used:
  the restored base addopts are trusted and repos rely on them (`-p django`, markers...).
- PYTEST_DISABLE_PLUGIN_AUTOLOAD is not set: plugins come from the installed environment, which the
  diff does not control here (it does if the workers install the patched project before verifying).
- A report that vanishes (`os._exit(0)`), or an exit code that disagrees with it, is never a pass.
- The code under test runs inside pytest and can rewrite its verdicts from within the process: canaries,
  tests planted to fail (verification/canary.py), catch a rewrite of every verdict; the suspicion flags point
  a reviewer at the rest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from db.lifecycle import Verdict
from db.spectypes import SetupNetwork
from system.git import GitError
from system.globs import matches_any
from verification.awareness import source_text
from verification.canary import judge_canaries, run_with_canaries
from verification.clean_feedback import (
    HiddenRun,
    clean_feedback,
    counted,
    quoted_texts,
    shows_visible_output,
    speakable,
)
from verification.confined import prepare, rerun_suspects, run_confined, visible_rerun
from verification.digest import environment_feedback, feedback_digest, hidden_lines, is_hidden, targets_digest
from verification.envcache import DEFAULT_KEY_FILES, EnvCache
from verification.environment import SetupEgress, SetupFailed
from verification.flags import assertion_inputs, assertion_literals, scan_diff
from verification.flaky import confirmed_flaky
from verification.guards import feedback_refused, gamed_reasons, startup_refusals
from verification.judge import Judgement, judge, under_test_only
from verification.patch import PatchRefused
from verification.phrases import ALSO_FIXED, KNOWN_FAILING
from verification.protect import (
    DEFAULT_PROTECT,
)
from verification.runner import TestRun
from verification.staging import add_hidden_tests, pinned_config, stage
from verification.targets import also_fixed, credit_known

HIDDEN_UNAPPLIED = "the hidden tests could not be added"


@dataclass
class VerifySpec:
    """How to verify diffs for one repository (from the repo settings and the ticket)."""

    test_cmd: str
    timeout: float
    targets: tuple[str, ...] = ()
    known: tuple[str, ...] = ()  # failures at the base that are not the ticket's (verification/targets.py)
    protect: tuple[str, ...] = DEFAULT_PROTECT
    hidden_tests: Path | None = None
    allow_test_edits: bool = False
    feedback_limit: int = 4000
    env: Mapping[str, str] | None = None
    pin_pytest: bool = True
    sandbox: bool | None = None
    network: bool = False
    readable: tuple[Path, ...] = ()  # declared paths the confined tests see read-only, besides their toolchains
    hidden: tuple[Path, ...] = ()  # covered even inside a readable folder (FLEET_HOME, the repository)
    env_names: tuple[str, ...] = ()  # the repository's `test_env`: variables passed to the tests by name
    granted_names: tuple[str, ...] = ()  # of those shaped like a secret's, the ones an operator passed on itself
    rerun_failures: bool = True
    output_limit: int = 64_000
    setup_cmd: str | None = None
    setup_timeout: float = 1800.0
    setup_network: SetupNetwork = "none"  # the repository's choice; "proxy" needs setup_egress, the way out
    setup_egress: SetupEgress | None = None
    copy_files: tuple[tuple[str, str], ...] = ()
    area: tuple[str, ...] = ()  # globs of the paths the ticket is about; changes elsewhere are flagged
    env_cache: EnvCache | None = None  # None: every checkout runs the setup afresh
    env_key_files: tuple[str, ...] = DEFAULT_KEY_FILES
    on_unconfined: Callable[[], None] | None = None  # told before a command runs unsandboxed (confined.py)

    @property
    def environment(self) -> Mapping[str, str]:
        """The variables the test run starts from: env, or this process's when env is None."""
        return self.env if self.env is not None else os.environ


@dataclass
class VerificationResult:
    """The verdict on one diff, the evidence, and the feedback for the agent's next attempt."""

    verdict: Verdict
    reasons: list[str]
    fail_to_pass: list[str]
    pass_to_pass: int
    broken: list[str]
    flaky: list[str]
    flags: list[str]
    feedback: str
    output: str
    duration: float
    reverted: list[str]
    warnings: list[str]
    still_failing: list[str] = field(default_factory=list)
    weak: bool = False
    known_failing: list[str] = field(default_factory=list)  # failing before and after, not part of this ticket
    run: TestRun | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of everything but the TestRun (whose own to_json() may be stored apart)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "run"}
        data["verdict"] = self.verdict.value
        return data


def run_baseline(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None = None,
    cached: bool = True,
) -> TestRun:
    """Run the tests (hidden ones included) on a clean checkout of the base commit, its environment set up before
    the hidden tests are added, as a candidate's is. cached: the environment may come from the cache and go into it;
    False for a commit that holds diffs (a merge build), whose setup built their code under the base's key."""
    return run_build(checkout, spec, report_dir, cancelled, cached)[0]


def run_build(
    checkout: Path,
    spec: VerifySpec,
    report_dir: Path,
    cancelled: threading.Event | None = None,
    cached: bool = True,
    canaries_from: TestRun | None = None,
) -> tuple[TestRun, str | None]:
    """run_baseline's run, with canaries planted after the tests of canaries_from (the baseline a merge build's
    diffs were verified against) when given, then withdrawn; and why its results cannot be trusted (None: they can)."""
    try:
        prepare(checkout, spec, "the baseline checkout", cancelled, report_dir, cached=cached)
    except SetupFailed as exc:
        return TestRun({}, None, False, "", 0.0, error=str(exc)), None
    try:
        add_hidden_tests(checkout, spec.hidden_tests)
    except (GitError, OSError) as exc:  # a task's test patch that does not apply at its base: no baseline
        return TestRun({}, None, False, "", 0.0, error=f"{HIDDEN_UNAPPLIED}: {exc}"), None
    config = pinned_config(checkout, spec)
    if canaries_from is None:
        return run_confined(checkout, spec, report_dir, spec.test_cmd, cancelled, config), None
    return run_with_canaries(checkout, spec, report_dir, cancelled, config, canaries_from)


def verify_diff(
    checkout: Path,
    diff: str,
    spec: VerifySpec,
    baseline: TestRun,
    report_dir: Path,
    cancelled: threading.Event | None = None,
) -> VerificationResult:
    """Stage diff in a clean base checkout (verification/staging.py), add the hidden tests, run the tests and judge
    against baseline. When hidden tests ran and the feedback shows a visible test's output, that output comes from
    a run without them (verification/clean_feedback.py)."""
    startup = startup_refusals(diff)
    if startup:
        return gamed(startup, scan_diff(diff))
    try:
        staged = stage(checkout, diff, spec, report_dir, cancelled)
    except SetupFailed as exc:
        return errored(str(exc))
    except PatchRefused as exc:
        return _refused_patch(exc, baseline, spec)
    changed, config, reverted = staged.changed, staged.config, staged.reverted
    try:
        hidden = add_hidden_tests(checkout, spec.hidden_tests)
    except (GitError, OSError) as exc:
        return errored(f"{HIDDEN_UNAPPLIED}: {exc}")
    refusals = gamed_reasons(checkout, diff, changed, spec.test_cmd, spec.environment, spec.protect, staged.set_up)
    if refusals:
        return gamed(refusals, scan_diff(diff) + outside_area(changed, spec.area))
    run, rewritten = run_with_canaries(checkout, spec, report_dir, cancelled, config, baseline)
    targets = _targets(spec, baseline, hidden)
    judgement = judge(baseline, run, targets)
    rerun = rerun_suspects(checkout, spec, report_dir, cancelled, run, judgement, config)
    if rerun is not None:
        judgement = judge(baseline, run, targets, rerun=rerun)
    if (confirmed := confirmed_flaky(checkout, diff, spec, report_dir, cancelled, judgement)) is not None:
        judgement = judge(baseline, run, targets, rerun=confirmed)
    visible = visible_rerun(checkout, spec, report_dir, cancelled, judgement, rerun, config)
    if visible is not None and (aware := under_test_only(visible, judgement.still_failing)):
        judgement.verdict = Verdict.GAMED
        judgement.reasons.insert(0, aware)
    judge_canaries(judgement, rewritten)
    _apply_gamed_rule(judgement, reverted)
    judgement.flags += scan_diff(diff, *_test_values(checkout, baseline, spec, hidden))
    judgement.flags += outside_area(changed, spec.area)
    known_failing = credit_known([t for t in spec.known if not is_hidden(t, hidden)], run.results)[1]
    extra = also_fixed(baseline.results, run.results, targets, judgement.fail_to_pass)
    judgement.fail_to_pass += extra
    shown = {t.split("::", 1)[0] for t in judgement.broken + judgement.still_failing if not is_hidden(t, hidden)}
    secrets = hidden_lines(spec.hidden_tests, checkout, sorted(shown))
    quoted = quoted_texts(run, rerun, visible) if hidden and judgement.reasons else frozenset()  # a pass quotes none
    told = counted(judgement, {*baseline.results, *targets}, hidden)
    if shows_visible_output(judgement, hidden):  # last: it wipes the checkout, which the steps above read
        first = HiddenRun(told, quoted, targets, hidden)
        feedback = clean_feedback(checkout, diff, spec, baseline, report_dir, cancelled, first, secrets)
    else:
        feedback = feedback_digest(run, speakable(told, quoted, hidden), spec.feedback_limit, hidden, secrets)
    result = replace(_result(judgement, run, rerun, reverted, feedback), known_failing=known_failing)
    if known_failing:
        result.warnings.append(f"{KNOWN_FAILING}: {', '.join(known_failing[:10])}")
    if extra:  # every one named: the view tells targets from these by this list (no column of its own)
        result.warnings.append(f"{ALSO_FIXED}: {', '.join(extra)}")
    return result


def _refused_patch(exc: PatchRefused, baseline: TestRun, spec: VerifySpec) -> VerificationResult:
    """A diff git would not take: the reason, and what the targets still need (no test ran)."""
    return refused(exc.reason, untested_feedback(exc.reason, baseline, _targets(spec, baseline, []), spec))


def outside_area(changed: list[str], area: tuple[str, ...]) -> list[str]:
    """A flag naming the changed files that fall outside the ticket's area (when it names one)."""
    stray = [path for path in changed if area and not matches_any(path, area)]
    return [f"the diff touches files outside the ticket's area: {', '.join(stray[:5])}"] if stray else []


def _targets(spec: VerifySpec, baseline: TestRun, hidden: list[str]) -> tuple[str, ...]:
    """The ticket's named tests plus every hidden test failing at the base (hidden tests always count, and are
    never known failures: they fail at the parents too when the bug is older); without named tests, the base's
    failures less the known ones."""
    if not spec.targets:
        return tuple(t for t in baseline.failures if t not in spec.known or is_hidden(t, hidden))
    extra = [t for t in baseline.failures if is_hidden(t, hidden) and t not in spec.targets]
    return (*spec.targets, *extra)


def refused(reason: str, feedback: str = "") -> VerificationResult:
    """The result for a diff that was not applied, so no test ran."""
    return _untested(Verdict.FAILED, reason, feedback or f"Verification: failed\n- the diff was refused: {reason}\n")


def gamed(reasons: list[str], flags: list[str]) -> VerificationResult:
    """The result for a diff refused before its tests ran, because of what it does to the test run."""
    result = _untested(Verdict.GAMED, reasons[0], feedback_refused(reasons))
    result.reasons, result.flags = list(reasons), flags
    return result


def errored(reason: str) -> VerificationResult:
    """The result when the environment, not the diff, kept the tests from running."""
    return _untested(Verdict.ERROR, reason, environment_feedback(reason))


def untested_feedback(reason: str, baseline: TestRun, targets: tuple[str, ...], spec: VerifySpec) -> str:
    """A refused diff's feedback: why, and the targets' failures at the base, which are still to fix."""
    hidden = hidden_names(spec.hidden_tests)
    return targets_digest(f"the diff was refused: {reason}", baseline, targets, spec.feedback_limit, hidden)


def _untested(verdict: Verdict, reason: str, feedback: str) -> VerificationResult:
    return VerificationResult(
        verdict=verdict,
        reasons=[reason],
        fail_to_pass=[],
        pass_to_pass=0,
        broken=[],
        flaky=[],
        flags=[],
        feedback=feedback,
        output="",
        duration=0.0,
        reverted=[],
        warnings=[],
    )


def hidden_names(hidden: Path | None) -> list[str]:
    """The repository paths of the hidden tests, without applying them (a folder's files, or a diff's targets)."""
    if hidden is None:
        return []
    if hidden.is_file():
        lines = hidden.read_text(encoding="utf-8", errors="replace").splitlines()
        return sorted({line[6:] for line in lines if line.startswith("+++ b/")})
    return sorted(p.relative_to(hidden).as_posix() for p in hidden.rglob("*") if p.is_file())


def _apply_gamed_rule(judgement: Judgement, reverted: list[str]) -> None:
    if not reverted:
        return
    note = f"the diff changed protected test files or test settings, reverted: {', '.join(reverted[:10])}"
    if judgement.verdict is Verdict.FAILED:
        judgement.verdict = Verdict.GAMED
        judgement.reasons.insert(0, note + "; with them restored the tests do not pass")
    judgement.flags.append(note)


def _test_values(
    checkout: Path, baseline: TestRun, spec: VerifySpec, hidden: list[str]
) -> tuple[set[str], dict[str, tuple[str, ...]]]:
    """Literals and literal call inputs asserted on in the visible test files the ticket is about."""
    files = {t.split("::", 1)[0] for t in (*spec.targets, *baseline.failures)} - set(hidden)
    literals: set[str] = set()
    inputs: dict[str, tuple[str, ...]] = {}
    for name in sorted(files):  # after the test runs, which could write there
        if name.endswith(".py") and (source := source_text(checkout, name)) is not None:
            literals |= assertion_literals(source)
            inputs |= assertion_inputs(source)
    return literals, inputs


def _result(
    judgement: Judgement,
    run: TestRun,
    rerun: TestRun | None,
    reverted: list[str],
    feedback: str,
) -> VerificationResult:
    unreadable = [f"the test report is unreadable: {run.report_error}"] if run.report_error else []
    warnings = list(dict.fromkeys(run.warnings + unreadable))
    return VerificationResult(
        verdict=judgement.verdict,
        reasons=judgement.reasons,
        fail_to_pass=judgement.fail_to_pass,
        pass_to_pass=judgement.pass_to_pass,
        broken=judgement.broken,
        flaky=judgement.flaky,
        flags=judgement.flags,
        feedback=feedback,
        output=run.output,
        duration=run.duration + (rerun.duration if rerun else 0.0),
        reverted=reverted,
        warnings=warnings,
        still_failing=judgement.still_failing,
        weak=judgement.weak,
        run=run,
    )
