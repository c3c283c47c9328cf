"""The code under test runs beside the hidden tests and can send them out encoded in a visible test's failure: the
agent's feedback comes from a run that never had them, the verdict from the run that did."""

from __future__ import annotations

import base64
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from verify_helpers import CALC, FAST_ENV, FIXED_CALC, PYTEST, Repo, make_repo

import verification.confined
from db.lifecycle import Verdict
from system.sandbox import bwrap_missing
from verification.clean_feedback import UNCONFINED
from verification.envcache import EnvCache
from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

ADD = "tests/test_calc.py::test_add"
SECRET_TEST = "from calc import add\n\n\ndef test_secret_large():\n    assert add(40, 2) == 42\n"
VENV = f"{shlex.quote(sys.executable)} -m venv --without-pip .venv"
SECRET_B64 = base64.b64encode(SECRET_TEST.encode()).decode()
needs_sandbox = pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")

# A "fix" that finds the test files it was not given and fails the visible target with their base64: it names no
# hidden file and quotes none of its lines, so the quote check lets it through.
ENCODE = (
    "import base64, glob\n"
    "    found = [p for p in glob.glob('tests/*.py') if not p.endswith('test_calc.py')]\n"
    "    raise AssertionError(base64.b64encode(''.join(open(p).read() for p in found).encode()).decode())"
)
# One that also leaves the base64 where a second run might look: in the checkout's environment, in the checkout, in its
# report folder and the one above, and reads it back from there when it finds no hidden test.
STASH = """import base64, glob, os

HOME = os.environ.get("HOME", ".")
PLACES = [".venv/stash.txt", "stash.txt"]
PLACES += [os.path.join(HOME, "..", "stash.txt"), os.path.join(HOME, "..", "..", "stash.txt")]


def add(a, b):
    found = [p for p in glob.glob("tests/*.py") if not p.endswith("test_calc.py")]
    if found:
        data = base64.b64encode(open(found[0], "rb").read()).decode()
        for place in PLACES:
            try:
                with open(place, "w") as out:
                    out.write(data)
            except OSError:
                pass
        raise AssertionError(data)
    for place in PLACES:
        if os.path.exists(place):
            raise AssertionError(open(place).read())
    return a - b
"""


def _hidden(tmp_path: Path) -> Path:
    hidden = tmp_path / "hidden"
    (hidden / "tests").mkdir(parents=True)
    (hidden / "tests" / "test_secret_calc.py").write_text(SECRET_TEST)
    return hidden


def _verify(tmp_path: Path, repo: Repo, spec: VerifySpec, files: dict[str, str | bytes | None]) -> VerificationResult:
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    return verify_diff(repo.clone(tmp_path / "c"), repo.diff(files), spec, baseline, tmp_path / "r")


def _spec(hidden: Path | None, **changes: Any) -> VerifySpec:
    return VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV, hidden_tests=hidden, targets=(ADD,), **changes)


def _leaks(feedback: str) -> bool:
    return SECRET_B64[:24] in feedback or "add(40, 2) == 42" in feedback or "secret" in feedback


@needs_sandbox
def test_hidden_tests_sent_out_in_base64_never_reach_the_feedback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    result = _verify(tmp_path, repo, _spec(_hidden(tmp_path)), {"calc.py": CALC.replace("return a - b", ENCODE)})
    assert result.verdict is Verdict.FAILED and "1 hidden test failed" in result.feedback
    assert result.run is not None and SECRET_B64[:24] in result.run.results[ADD].message  # the verdict's run carried it
    assert not _leaks(result.feedback)
    assert f"FAILED {ADD}" in result.feedback  # what the target does without the hidden tests is still shown


@needs_sandbox
@pytest.mark.parametrize("cached", [False, True], ids=["environment set up afresh", "environment from the cache"])
def test_what_the_run_with_hidden_tests_left_behind_never_reaches_the_feedback(tmp_path: Path, cached: bool) -> None:
    repo = make_repo(tmp_path / "repo")
    cache = EnvCache(tmp_path / "envs", max_bytes=2**30) if cached else None
    spec = _spec(_hidden(tmp_path), setup_cmd=VENV, env_cache=cache)
    calc = "from leak import add\n\n\ndef mul(a, b):\n    return a * b\n"
    result = _verify(tmp_path, repo, spec, {"calc.py": calc, "leak.py": STASH})
    assert result.verdict is Verdict.FAILED and "1 hidden test failed" in result.feedback
    assert not _leaks(result.feedback)
    assert "assert -1 == 5" in result.feedback  # the second run found nothing left: add is only wrong


@needs_sandbox
def test_hidden_tests_in_a_folder_the_tests_may_read_are_covered_in_the_second_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    shared = tmp_path / "shared"
    hidden = _hidden(shared)
    read_it = ENCODE.replace("glob.glob('tests/*.py')", f"glob.glob({str(hidden)!r} + '/**/*.py', recursive=True)")
    result = _verify(
        tmp_path, repo, _spec(hidden, readable=(shared,)), {"calc.py": CALC.replace("return a - b", read_it)}
    )
    assert result.verdict is Verdict.FAILED and "1 hidden test failed" in result.feedback
    assert result.run is not None and SECRET_B64[:24] in result.run.results[ADD].message  # readable beside them
    assert not _leaks(result.feedback) and f"FAILED {ADD}" in result.feedback


@needs_sandbox
def test_an_honest_failure_beside_hidden_tests_keeps_its_assertion_and_traceback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    result = _verify(tmp_path, repo, _spec(_hidden(tmp_path)), {"calc.py": CALC.replace("a - b", "a * b")})
    assert result.verdict is Verdict.FAILED and "1 hidden test failed" in result.feedback
    assert f"FAILED {ADD}" in result.feedback and "assert 6 == 5" in result.feedback
    assert "traceback (last lines):" in result.feedback and "test_calc.py:5: AssertionError" in result.feedback


def test_without_a_sandbox_the_visible_output_beside_hidden_tests_is_withheld(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    spec = _spec(_hidden(tmp_path), sandbox=False)
    result = _verify(tmp_path, repo, spec, {"calc.py": CALC.replace("return a - b", ENCODE)})
    assert result.verdict is Verdict.FAILED and f"{UNCONFINED}: {ADD}" in result.feedback
    assert not _leaks(result.feedback)


def _counting(runs: list[str]) -> Callable[..., TestRun]:
    real = verification.confined.run_tests

    def run_tests(checkout: Path, command: str, **kwargs: Any) -> TestRun:
        runs.append(command)
        return real(checkout, command, **kwargs)

    return run_tests


@pytest.mark.parametrize(
    ("hidden", "calc", "expected"),
    [
        pytest.param(False, CALC.replace("a - b", "a * b"), 1, id="no hidden tests, failing: one run"),
        pytest.param(True, FIXED_CALC, 1, id="hidden tests, passing: one run"),
        pytest.param(True, CALC.replace("a - b", "a * b"), 2, id="hidden tests, failing: a second run without them"),
    ],
)
def test_a_second_run_is_paid_only_for_feedback_beside_hidden_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: bool, calc: str, expected: int
) -> None:
    repo = make_repo(tmp_path / "repo")
    spec = replace(_spec(_hidden(tmp_path) if hidden else None), rerun_failures=False)
    baseline = run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports")
    runs: list[str] = []
    monkeypatch.setattr(verification.confined, "run_tests", _counting(runs))
    if expected == 2 and bwrap_missing() is not None:
        pytest.skip("bubblewrap is not usable here: the second run needs a sandbox")
    verify_diff(repo.clone(tmp_path / "c"), repo.diff({"calc.py": calc}), spec, baseline, tmp_path / "r")
    assert len(runs) == expected
