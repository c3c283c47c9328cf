"""The test Fleet's in-process CLI behaves as a `fleet` process would: its own environment and folder per call,
nothing left behind in this process, and an uncaught exception shown as a traceback (so no test can miss one)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.conftest import Fleet, make_test_fleet


def test_each_call_sees_only_its_fleets_environment_and_folder(tmp_path: Path) -> None:
    first, second = make_test_fleet(tmp_path / "a"), make_test_fleet(tmp_path / "b", FLEET_USER="someone-else")
    for fleet in (first, second):
        fleet.tmp.mkdir()
    before, cwd = dict(os.environ), Path.cwd()
    first.sample_repo()
    first.submit("--repo", "calc", "--title", "t", "--body", "tests/test_calc.py::test_add", "--agent-cmd", "true")
    assert [t["title"] for t in first.json("tickets")] == ["t"]
    assert second.json("tickets") == []  # another FLEET_HOME: nothing of the first shows
    assert second.cli("repo", "list", "--json").stdout.strip() == "[]"
    assert (dict(os.environ), Path.cwd()) == (before, cwd)
    assert not (cwd / ".fleet").exists()  # no call fell back to the default FLEET_HOME in this folder


def test_an_uncaught_exception_is_a_traceback_on_stderr_in_process_as_in_a_process(tmp_path: Path) -> None:
    fleet: Fleet = make_test_fleet(tmp_path)
    fleet.run("repo", "list")  # makes the database
    with sqlite3.connect(fleet.home / "fleet.db") as conn:
        conn.execute("DROP TABLE tickets")  # a fault Fleet does not expect to meet: its schema cut by hand
    for proc in (fleet.cli("tickets", check=False), fleet.cli_subprocess("tickets", check=False)):
        assert proc.returncode == 1
        assert "Traceback (most recent call last)" in proc.stderr and "no such table" in proc.stderr, proc.stderr


def test_a_bad_option_is_a_usage_error_with_exit_code_2(tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path)
    for proc in (fleet.cli("tickets", "--no-such-option", check=False), fleet.run("up", "--no-such", check=False)):
        assert proc.returncode == 2 and "No such option" in proc.stderr and proc.stdout == "", proc
