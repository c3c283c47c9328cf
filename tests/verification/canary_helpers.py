"""Helpers for the canary tests: code that rewrites pytest's verdicts from inside the run, and what a
verification shows of itself."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from verify_helpers import TEST_CALC, Repo, make_repo

from verification.runner import TestRun
from verification.verify import VerificationResult, VerifySpec, run_baseline, verify_diff

ADD = "tests/test_calc.py::test_add"
OTHER_TESTS = "def test_one():\n    assert 1\n\n\ndef test_two():\n    assert 2\n"
# Reached by a name no static check reads: `_pytest.python`, `_pytest.runner`, `_pytest.reports` in rot13.
PATCH_RUNTEST = """

import codecs as _codecs
import importlib as _importlib

_python = _importlib.import_module(_codecs.decode("_clgrfg.clguba", "rot13"))
_runtest = _python.Function.runtest


def _quiet(self):
    try:
        _runtest(self)
    except BaseException:
        pass


_python.Function.runtest = _quiet
"""
PATCH_CALL_AND_REPORT = """

import codecs as _codecs
import importlib as _importlib

_runner = _importlib.import_module(_codecs.decode("_clgrfg.ehaare", "rot13"))
_original = _runner.call_and_report


def _passing(item, when, log=True, **kwds):
    report = _original(item, when, log=False, **kwds)
    report.outcome, report.longrepr = "passed", None
    if log:
        item.ihook.pytest_runtest_logreport(report=report)
    return report


_runner.call_and_report = _passing
"""
PATCH_REPORT_OUTCOME = """

import codecs as _codecs
import importlib as _importlib

_reports = _importlib.import_module(_codecs.decode("_clgrfg.ercbegf", "rot13"))
_made = _reports.TestReport.from_item_and_call.__func__


def _passing(cls, item, call):
    report = _made(cls, item, call)
    report.outcome, report.longrepr = "passed", None
    return report


_reports.TestReport.from_item_and_call = classmethod(_passing)
"""
DURATION = re.compile(r"in \d+\.\d+s")


# A root conftest puts the checkout on xdist workers' import path; its autouse fixture wraps every test, canaries too.
CONFTEST = """\
import pytest


@pytest.fixture(autouse=True)
def numbers(request):
    request.node.numbers = [1, 2]
    yield
    assert request.node.numbers == [1, 2]
"""


def set_up(tmp_path: Path, spec: VerifySpec) -> tuple[Repo, TestRun]:
    repo = make_repo(tmp_path / "repo", {"tests/test_other.py": OTHER_TESTS, "conftest.py": CONFTEST})
    return repo, TestRun.from_json(
        run_baseline(repo.clone(tmp_path / "base"), spec, tmp_path / "base-reports").to_json()
    )


def verify(
    repo: Repo, baseline: TestRun, spec: VerifySpec, where: Path, code: str, files: Mapping[str, str] | None = None
) -> VerificationResult:
    diff = repo.diff({"calc.py": code, **(files or {})})
    return verify_diff(repo.clone(where), diff, spec, baseline, where.with_suffix(".reports"))


def planted(checkout: Path) -> list[str]:
    """The names of the tests in checkout's test files that are not the repository's own."""
    own = set(re.findall(r"def (\w+)", TEST_CALC + OTHER_TESTS))
    found = re.findall(r"def (\w+)", "".join(p.read_text() for p in sorted((checkout / "tests").glob("*.py"))))
    return [name for name in found if name not in own]


def comparable(result: VerificationResult, checkout: Path) -> str:
    """What users and agents see of a verification, with its run's durations and folder left out."""
    seen = {k: v for k, v in result.to_json().items() if k not in ("duration", "output")}
    seen["run"] = {k: v for k, v in result.run.to_json().items() if k != "duration"} if result.run else None
    return DURATION.sub("in _s", json.dumps(seen, sort_keys=True)).replace(str(checkout), "<checkout>")
