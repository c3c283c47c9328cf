"""Fleet's own pytest plugin and its results channel: out of the project's reach, and compared with the report."""

from __future__ import annotations

from pathlib import Path

from verify_helpers import FAST_ENV, PYTEST, Repo

from verification.channel import Channel, disagreement
from verification.report import Outcome, TestResult
from verification.runner import TestRun, run_tests

PROBE_TEST = """import os
import unittest
from pathlib import Path


def test_the_runner_leaves_no_trace_for_the_code_under_test():
    start = dict(e.split("=", 1) for e in Path("/proc/self/environ").read_text().split("\\0") if "=" in e)
    given = int(start["FLEET_RESULTS_FD"])
    try:
        os.fstat(given)
    except OSError:
        pass
    else:
        raise AssertionError("the results channel is still open at the number Fleet gave")
    assert not [k for k in os.environ if k.startswith(("PYTEST_", "FLEET_RESULTS", "FLEET_JUNIT"))]
    assert "PYTHONSAFEPATH" not in os.environ


class TestUnderUnittest(unittest.TestCase):
    def test_no_runner_variable(self):
        assert not [k for k in os.environ if k.startswith("PYTEST_")]
"""
FAKE_RUNNER = "print('FAKE RUNNER')\nraise SystemExit(0)\n"


def run(repo: Repo, tmp_path: Path) -> TestRun:
    return run_tests(repo.path, PYTEST, timeout=60, report_dir=tmp_path / "reports", env=FAST_ENV)


def test_the_plugin_reports_every_test_and_hides_its_channel_and_the_runners_variables(
    repo: Repo, tmp_path: Path
) -> None:
    (repo.path / "tests" / "test_probe.py").write_text(PROBE_TEST)
    result = run(repo, tmp_path)
    probe = "tests/test_probe.py::test_the_runner_leaves_no_trace_for_the_code_under_test"
    assert result.results[probe].outcome is Outcome.PASSED, result.output
    unittest_probe = "tests/test_probe.py::TestUnderUnittest::test_no_runner_variable"
    assert result.results[unittest_probe].outcome is Outcome.PASSED, result.output
    assert result.channel is not None and result.channel.sessions == 1
    assert result.channel.outcomes[probe] == "passed"
    assert result.channel.outcomes["tests/test_calc.py::test_add"] == "failed"
    assert disagreement(result.channel, result.results) is None
    assert TestRun.from_json(result.to_json()).channel == result.channel


def test_a_root_module_named_pytest_is_not_the_runner(repo: Repo, tmp_path: Path) -> None:
    (repo.path / "pytest.py").write_text(FAKE_RUNNER)
    result = run(repo, tmp_path)
    assert "FAKE RUNNER" not in result.output and result.report_found
    assert result.failures == ["tests/test_calc.py::test_add"]  # and the project's root modules still import


def passed(*ids: str) -> dict[str, TestResult]:
    return {test_id: TestResult(test_id, Outcome.PASSED) for test_id in ids}


def test_the_report_disagreeing_with_the_channel_is_named() -> None:
    assert disagreement(None, passed("t::a")) is not None
    assert "reported nothing" in (disagreement(Channel(), passed("t::a")) or "")
    assert "Fleet's plugin saw it failed" in (disagreement(Channel(1, {"t::a": "failed"}), passed("t::a")) or "")
    assert "saw 1 pass" in (disagreement(Channel(1, {"t::a": "passed"}), passed("t::a", "t::b")) or "")
    assert disagreement(Channel(1, {"t::a": "passed", "t::b": "xpassed"}), passed("t::a", "t::b")) is None
