"""Checks on an applied diff before any test runs: what the diff must not do whatever its tests say.

Each returns reasons to refuse the diff as gamed, phrased for the agent's feedback: what was refused and what
is allowed instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from system.globs import matches_any
from verification.awareness import AWARE_RULE, added_lines, test_aware
from verification.protect import doctest_modules_run
from verification.shadow import SHADOW_RULE, shadowing, startup_reason

AWARE_HINT = (
    "code outside the tests must not depend on the test runner (its environment variables, its modules, "
    "its callers): fix the behaviour for every caller; ordinary environment variables are fine"
)


def gamed_reasons(
    checkout: Path,
    diff: str,
    changed: list[str],
    command: str,
    env: Mapping[str, str],
    protect: tuple[str, ...],
    set_up: bool = False,
) -> list[str]:
    """Why the applied diff is gamed before its tests run (empty: nothing found); set_up: a setup ran the diff's code
    in checkout since it was applied."""
    reasons = [f"{SHADOW_RULE}: {reason}" for reason in shadowing(checkout, changed, command, env)]
    tests = [path for path in changed if matches_any(path, protect)]
    found = test_aware(checkout, diff, tests, staged=set_up, doctests_run=doctest_modules_run(checkout, command))
    if found:
        reasons += [f"{AWARE_RULE}: {finding}" for finding in found[:10]]
        reasons.append(f"{AWARE_RULE}: {AWARE_HINT}")
    return reasons


def feedback_refused(reasons: list[str]) -> str:
    """The agent's feedback for a diff refused before its tests ran: each rule it tripped and what to do."""
    lines = ["Verification: gamed", "- the diff was refused before its tests ran:"]
    return "\n".join([*lines, *(f"  - {reason}" for reason in reasons)]) + "\n"


def startup_refusals(diff: str) -> list[str]:
    """Files Python runs at startup (sitecustomize.py, *.pth) that the diff writes: refused before it applies."""
    return [f"{SHADOW_RULE}: {reason}" for path in added_lines(diff) if (reason := startup_reason(path))]
