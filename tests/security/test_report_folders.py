"""A rerun's report folder sits in a folder the run before could write: nothing that run left there is followed."""

from __future__ import annotations

from pathlib import Path

from verification.confined import fresh_folder
from verification.runner import run_tests


def test_a_planted_link_is_removed_and_its_target_left_alone(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("mine")
    report = tmp_path / "candidate"
    report.mkdir()
    (report / "rerun").symlink_to(host)
    made = fresh_folder(report / "rerun")
    assert made.is_dir() and not made.is_symlink() and list(made.iterdir()) == []
    assert (host / "keep").read_text() == "mine"


def test_a_planted_file_or_folder_is_replaced_by_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "visible").write_text("not a folder")
    (tmp_path / "rerun" / "inner").mkdir(parents=True)
    (tmp_path / "rerun" / "report.xml").write_text("<testsuite/>")
    for name in ("visible", "rerun"):
        made = fresh_folder(tmp_path / name)
        assert made.is_dir() and list(made.iterdir()) == []


def test_what_an_earlier_run_left_as_reports_is_removed_never_followed(tmp_path: Path) -> None:
    """An attempt's verification delivered again finds its report folder as the earlier run's tests left it: a folder
    named like a report stopped the next run (IsADirectoryError), and a link there was read as the next report."""
    host = tmp_path / "host.xml"
    host.write_text('<testsuite><testcase classname="host" name="read"/></testsuite>')
    reports = tmp_path / "candidate"
    (reports / "old.xml" / "inner").mkdir(parents=True)
    (reports / "link.xml").symlink_to(host)
    run = run_tests(tmp_path, "true", timeout=30, report_dir=reports)
    assert run.error is None and run.results == {} and not run.report_found
    assert sorted(p.name for p in reports.iterdir() if p.suffix == ".xml") == []
    assert host.exists()
