"""Which failing tests a ticket is about: the named ones, else those failing at the base that are not known failures.

A known failure fails at the base commit and at each of its parents the same way (an environment, network or
platform failure no diff can fix), or is listed in the repository's `known_failures`. If every failure at the
base is known, the user asked about them: they are all targets. Named targets (`--target`) always win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verification.judge import covers, nearest
from verification.report import Outcome, TestResult
from verification.runner import TestRun


@dataclass(frozen=True)
class Targets:
    """The tests that must pass, and the failures at the base that are not part of the ticket."""

    targets: tuple[str, ...]
    known: tuple[str, ...] = ()


def choose_targets(
    named: Sequence[str], base: TestRun, parents: Sequence[TestRun] = (), listed: Sequence[str] = ()
) -> Targets:
    """The named tests, else the base's failures less the known ones (all of them when every one is known)."""
    if named:
        return Targets(tuple(named))
    failing = base.failures
    known = [t for t in failing if t in listed or (parents and all(_fails_alike(base, p, t) for p in parents))]
    if len(known) == len(failing):
        return Targets(tuple(failing))
    return Targets(tuple(t for t in failing if t not in known), tuple(known))


def _fails_alike(base: TestRun, parent: TestRun, test_id: str) -> bool:
    """True when test_id fails at the parent with the same outcome and the same kind of error as at the base."""
    before, now = parent.results.get(test_id), base.results.get(test_id)
    if before is None or now is None or not before.bad:
        return False
    return before.outcome is now.outcome and error_kind(before) == error_kind(now)


def error_kind(result: TestResult) -> str:
    """The exception's name from a failure's first message line (`PackageNotFoundError: ...` gives its name)."""
    lines = result.message.strip().splitlines()
    return lines[0].split(":", 1)[0].strip() if lines else ""


def credit_known(known: Sequence[str], results: Mapping[str, TestResult]) -> tuple[list[str], list[str]]:
    """(known failures the diff fixed, known failures still failing)."""
    fixed = [t for t in known if (r := results.get(t)) is not None and r.outcome is Outcome.PASSED]
    return fixed, [t for t in known if t not in fixed]


def also_fixed(
    base: Mapping[str, TestResult], now: Mapping[str, TestResult], targets: Sequence[str], fixed: Sequence[str]
) -> list[str]:
    """The tests failing at the base and passing with the diff that no target covers and fixed does not list:
    what the diff fixed beyond the ticket, shown to the reviewer with the targets it fixed."""
    return [
        t
        for t, r in base.items()
        if r.bad and (after := now.get(t)) is not None and after.outcome is Outcome.PASSED
        and t not in fixed and not any(covers(target, t) for target in targets)
    ]  # fmt: skip


def unknown_targets(named: Sequence[str], base: TestRun) -> str | None:
    """Why the named targets cannot be verified when the base's report has no test for some of them (a mistyped
    --target spent every attempt on a test that never ran), else None; None too when the command writes no report.

    A target is a test id, a class or file holding tests, or a test whose parameters make several ids."""
    if not base.report_found:
        return None
    unknown = [t for t in named if not any(r == t or r.startswith((f"{t}::", f"{t}[")) for r in base.results)]
    if not unknown:
        return None
    shown = ", ".join(f"{t}{nearest(t, base.results)}" for t in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return (
        f"the ticket names {'a test' if len(unknown) == 1 else 'tests'} the base commit does not have: {shown}{more};"
        " a --target must name a test of the base commit as the test command's report names it"
    )
