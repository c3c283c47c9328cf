"""JUnit parsing: pytest node ids, outcomes, other tools' reports and hostile files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from verify_helpers import FAST_ENV, PYTEST, make_repo

from verification import report
from verification.report import Outcome, ReportError, node_id, parse_junit
from verification.verify import VerifySpec, run_baseline

SAMPLE = """\
import pytest


def test_ok():
    pass


def test_bad():
    assert 1 + 1 == 3, "math"


class TestK:
    @pytest.mark.parametrize("x", [1, "a b", "x::y"])
    def test_p(self, x):
        assert x != 1

    class TestInner:
        def test_in(self):
            pass


@pytest.mark.xfail
def test_xf():
    assert 0


@pytest.mark.skip(reason="nope")
def test_sk():
    pass
"""


@pytest.fixture(scope="module")
def pytest_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("junit")
    (root / "tests").mkdir()
    (root / "tests" / "test_a.py").write_text(SAMPLE)
    (root / "tests" / "test_b.py").write_text("import nonexistent_module_xyz\n")
    report = root / "out.xml"
    argv = [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", "-o", "junit_family=xunit1"]
    argv += ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--continue-on-collection-errors", "tests"]
    subprocess.run(argv, cwd=root, capture_output=True, check=False)
    return report


def test_pytest_ids_classes_and_parameters(pytest_report: Path) -> None:
    results = parse_junit(pytest_report)
    assert results["tests/test_a.py::test_ok"].outcome is Outcome.PASSED
    assert results["tests/test_a.py::TestK::test_p[1]"].outcome is Outcome.FAILED
    assert results["tests/test_a.py::TestK::test_p[a b]"].outcome is Outcome.PASSED
    assert results["tests/test_a.py::TestK::test_p[x::y]"].outcome is Outcome.PASSED
    assert results["tests/test_a.py::TestK::TestInner::test_in"].outcome is Outcome.PASSED
    assert results["tests/test_a.py::test_xf"].outcome is Outcome.XFAILED
    assert results["tests/test_a.py::test_sk"].outcome is Outcome.SKIPPED


def test_failure_message_and_traceback(pytest_report: Path) -> None:
    bad = parse_junit(pytest_report)["tests/test_a.py::test_bad"]
    assert bad.outcome is Outcome.FAILED
    assert "math" in bad.message
    assert "assert" in bad.details


def test_collection_error_is_keyed_by_file(pytest_report: Path) -> None:
    broken = parse_junit(pytest_report)["tests/test_b.py"]
    assert broken.outcome is Outcome.ERROR
    assert "nonexistent_module_xyz" in broken.details


def test_node_id_without_file_uses_classname() -> None:
    assert node_id(None, "pkg.Suite", "test_x") == "pkg.Suite::test_x"
    assert node_id(None, "", "TestX") == "TestX"
    assert node_id("/r/tests/test_a.py", "tests.test_a", "test_x", Path("/r")) == "tests/test_a.py::test_x"


def test_directory_of_reports_from_other_tools(tmp_path: Path) -> None:
    (tmp_path / "go.xml").write_text(
        '<testsuites><testsuite name="calc"><testcase classname="calc" name="TestAdd">'
        '<failure message="Failed">calc_test.go:9: got -1</failure></testcase>'
        '<testcase classname="calc" name="TestMul"/></testsuite></testsuites>'
    )
    (tmp_path / "jest.xml").write_text(
        '<testsuite name="jest"><testcase classname="sum adds" name="sum adds 1 + 2"/></testsuite>'
    )
    (tmp_path / "notes.txt").write_text("not a report")
    results = parse_junit(tmp_path)
    assert results["calc::TestAdd"].outcome is Outcome.FAILED
    assert results["calc::TestAdd"].details == "calc_test.go:9: got -1"
    assert results["calc::TestMul"].outcome is Outcome.PASSED
    assert results["sum adds::sum adds 1 + 2"].outcome is Outcome.PASSED


def test_duplicate_id_keeps_the_worst_outcome(tmp_path: Path) -> None:
    case = '<testcase classname="m" name="t" file="m.py">{}</testcase>'
    body = case.format("") + case.format('<error message="teardown">boom</error>') + case.format("")
    (tmp_path / "r.xml").write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")
    assert parse_junit(tmp_path / "r.xml")["m.py::t"].outcome is Outcome.ERROR


@pytest.mark.parametrize(
    "text",
    [
        "<testsuites><testsuite><testcase name='x'>",
        "",
        '<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>',
        "<html><body/></html>",
    ],
    ids=["truncated", "empty", "entities", "not-junit"],
)
def test_hostile_or_broken_reports_raise(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.xml").write_text(text)
    with pytest.raises(ReportError):
        parse_junit(tmp_path / "r.xml")


def test_doctype_text_inside_a_failure_is_only_text(tmp_path: Path) -> None:
    (tmp_path / "r.xml").write_text(
        '<testsuite><testcase classname="ui" name="renders"><failure message="a &amp; b">'
        "<![CDATA[expected <!DOCTYPE html>]]></failure></testcase></testsuite>"
    )
    result = parse_junit(tmp_path / "r.xml")["ui::renders"]
    assert result.message == "a & b" and result.details == "expected <!DOCTYPE html>"


@pytest.mark.timeout(30)
def test_a_report_folder_entry_that_is_no_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    """A fifo there (made where the sandbox has no seccomp filter) stopped the verification for good."""
    os.mkfifo(tmp_path / "r.xml")
    with pytest.raises(ReportError, match="r.xml: not a regular file"):
        parse_junit(tmp_path)


def test_reports_are_bounded_in_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each report was bounded, not their number: a run could leave thousands of them."""
    monkeypatch.setattr(report, "MAX_REPORT_BYTES", 1000)
    for n in range(3):
        (tmp_path / f"r{n}.xml").write_text("<testsuite>" + " " * 400 + "</testsuite>")
    with pytest.raises(ReportError, match="r2.xml: the reports are larger than 1,000 bytes in all"):
        parse_junit(tmp_path)


def test_a_test_defined_in_another_file_has_the_id_of_the_file_that_collected_it(tmp_path: Path) -> None:
    """JUnit names the file a test's function is defined in (a base class's module); pytest's node id, the one
    tickets name and Fleet's plugin reports, is the collecting test file's."""
    checks = "from calc import add\n\n\nclass AddChecks:\n    def test_add(self):\n        assert add(2, 3) == 5\n"
    files = {
        "tests/__init__.py": "",
        "tests/checks.py": checks,
        "tests/test_a.py": "from tests.checks import AddChecks\n\n\nclass TestA(AddChecks):\n    pass\n",
        "tests/test_b.py": "from tests.checks import AddChecks\n\n\nclass TestB(AddChecks):\n    pass\n",
        "test.txt": ">>> 1 + 1\n2\n",  # a doctest file: its id is its own, whatever Python files sit beside it
        "test.py": "",
    }
    repo = make_repo(tmp_path / "repo", files)
    spec = VerifySpec(test_cmd=PYTEST, timeout=60, env=FAST_ENV)
    run = run_baseline(repo.clone(tmp_path / "checkout"), spec, tmp_path / "reports")
    assert run.channel is not None and sorted(run.results) == sorted(run.channel.outcomes)
    assert run.results["tests/test_a.py::TestA::test_add"].outcome is Outcome.FAILED
    assert "test.txt::test.txt" in run.results
