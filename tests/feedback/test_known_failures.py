"""Known-failure classification: which failures at the base a ticket is about, and which it cannot be about."""

from __future__ import annotations

from verification.report import Outcome, TestResult
from verification.runner import TestRun
from verification.targets import choose_targets, credit_known, unknown_targets

BUG = "tests/test_core.py::test_tail"
ENV = "tests/test_version.py::test_installed_version"
NOT_FOUND = "importlib.metadata.PackageNotFoundError: No package metadata was found for more-itertools"


def run(**outcomes: tuple[Outcome, str]) -> TestRun:
    ids = {"bug": BUG, "env": ENV, "ok": "tests/test_core.py::test_take"}
    results = {ids[k]: TestResult(ids[k], outcome, message) for k, (outcome, message) in outcomes.items()}
    return TestRun(results, 1, True, "", 0.1)


PASS = (Outcome.PASSED, "")
BASE = run(
    bug=(Outcome.FAILED, "AssertionError: assert ['F', 'G'] == ['E', 'F', 'G']"),
    env=(Outcome.FAILED, NOT_FOUND),
    ok=PASS,
)


def test_a_failure_at_the_parent_too_is_known() -> None:
    parent = run(bug=PASS, env=(Outcome.FAILED, NOT_FOUND), ok=PASS)
    chosen = choose_targets((), BASE, [parent])
    assert chosen.targets == (BUG,) and chosen.known == (ENV,)


def test_a_different_failure_at_the_parent_is_not_known() -> None:
    parent = run(bug=PASS, env=(Outcome.ERROR, "ImportError: cannot import name 'tail'"), ok=PASS)
    assert choose_targets((), BASE, [parent]).targets == (BUG, ENV)


def test_every_parent_must_fail_alike() -> None:
    failing, passing = run(bug=PASS, env=(Outcome.FAILED, NOT_FOUND)), run(bug=PASS, env=PASS)
    assert choose_targets((), BASE, [failing, passing]).known == ()


def test_a_listed_failure_is_known() -> None:
    chosen = choose_targets((), BASE, (), listed=[ENV])
    assert chosen.targets == (BUG,) and chosen.known == (ENV,)


def test_when_every_failure_is_known_all_are_targets() -> None:
    parent = run(bug=(Outcome.FAILED, "AssertionError: other"), env=(Outcome.FAILED, NOT_FOUND), ok=PASS)
    assert choose_targets((), BASE, [parent]).targets == (BUG, ENV)
    assert choose_targets((), BASE, (), listed=[BUG, ENV]).known == ()


def test_named_targets_always_win() -> None:
    parent = run(bug=PASS, env=(Outcome.FAILED, NOT_FOUND), ok=PASS)
    assert choose_targets([ENV], BASE, [parent], listed=[ENV]).targets == (ENV,)


def test_fixing_a_known_failure_is_credited() -> None:
    fixed, still = credit_known([ENV], run(bug=PASS, env=PASS, ok=PASS).results)
    assert (fixed, still) == ([ENV], [])
    assert credit_known([ENV], BASE.results) == ([], [ENV])


def test_a_target_is_a_test_class_file_or_parametrized_test_of_the_base() -> None:
    base = TestRun(
        {t: TestResult(t, Outcome.PASSED, "") for t in (BUG, "tests/test_core.py::TestTake::test_one[1-2]")},
        1,
        True,
        "",
        0.1,
    )
    known = (BUG, "tests/test_core.py", "tests/test_core.py::TestTake", "tests/test_core.py::TestTake::test_one")
    assert unknown_targets(known, base) is None
    assert unknown_targets(["tests/test_core.py::test_tial"], base) == (
        f"the ticket names a test the base commit does not have: tests/test_core.py::test_tial (did you mean {BUG}?);"
        " a --target must name a test of the base commit as the test command's report names it"
    )
    assert unknown_targets(["t::a", "t::b"], base).startswith("the ticket names tests the base")  # type: ignore[union-attr]
    assert unknown_targets(["t::a"], TestRun({}, 1, False, "", 0.1)) is None  # no report: the exit code judges
