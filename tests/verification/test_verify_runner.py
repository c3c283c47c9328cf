"""run_tests: real commands, a forced JUnit report, and how a run that cannot be trusted is reported."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from verify_helpers import FAST_ENV, PYTEST, Repo

from verification.report import Outcome
from verification.runner import TestRun, looks_like_pytest, run_tests


def run(repo: Repo, command: str, tmp_path: Path, timeout: float = 30.0, **kw: object) -> TestRun:
    return run_tests(repo.path, command, timeout=timeout, report_dir=tmp_path / "reports", env=FAST_ENV, **kw)  # type: ignore[arg-type]


def test_pytest_writes_a_report_outside_the_checkout(repo: Repo, tmp_path: Path) -> None:
    result = run(repo, PYTEST, tmp_path)
    assert result.report_found and result.error is None
    assert result.exit_code == 1
    assert result.results["tests/test_calc.py::test_mul"].outcome is Outcome.PASSED
    assert result.failures == ["tests/test_calc.py::test_add"]
    assert (tmp_path / "reports" / "junit.xml").is_file()
    assert not (repo.path / "junit.xml").exists()


def test_command_not_found(repo: Repo, tmp_path: Path) -> None:
    result = run(repo, "no-such-tool-xyz --verbose", tmp_path)
    assert result.exit_code == 127
    assert result.error == "test command not found: no-such-tool-xyz"


def test_timeout_kills_the_run(repo: Repo, tmp_path: Path) -> None:
    result = run(repo, "sleep 30", tmp_path, timeout=0.3)
    assert result.timed_out
    assert result.error == "test command timed out after 0.3s"
    assert result.duration < 10


def test_cancelled(repo: Repo, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert run(repo, "sleep 30", tmp_path, cancelled=stop).error == "cancelled"


def test_other_tools_write_junit_to_the_exported_path(repo: Repo, tmp_path: Path) -> None:
    xml = '<testsuite><testcase classname="go" name="TestAdd"><failure message="got -1"/></testcase></testsuite>'
    result = run(repo, f"echo '{xml}' > \"$FLEET_JUNIT_XML\"; exit 1", tmp_path)
    assert result.report_found
    assert result.results["go::TestAdd"].message == "got -1"


def test_a_stale_report_is_not_read_again(repo: Repo, tmp_path: Path) -> None:
    run(repo, PYTEST, tmp_path)
    result = run(repo, "exit 0", tmp_path)
    assert not result.report_found and not result.results


def test_pytest_without_report_is_flagged(repo: Repo, tmp_path: Path) -> None:
    repo.write({"tests/test_calc.py": "import os\n\ndef test_quit():\n    os._exit(0)\n"})
    result = run(repo, PYTEST, tmp_path)
    assert result.exit_code == 0
    assert not result.report_found and result.expects_report


def test_determinism_knobs_are_set(repo: Repo, tmp_path: Path) -> None:
    result = run(repo, 'echo "$PYTHONHASHSEED $TZ $PYTHONDONTWRITEBYTECODE $FLEET_REPORT_DIR"', tmp_path)
    assert result.output.strip() == f"0 UTC 1 {tmp_path / 'reports'}"


def test_json_round_trip(repo: Repo, tmp_path: Path) -> None:
    result = run(repo, PYTEST, tmp_path)
    again = TestRun.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


def test_looks_like_pytest() -> None:
    assert looks_like_pytest("make test", "==== test session starts ====\n")
    assert looks_like_pytest("make test", "1 failed, 2 passed in 0.12s\n")
    assert not looks_like_pytest("go test ./...", "ok  calc 0.01s\n")


def test_the_environment_of_tests_is_an_allow_list(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://fleet:hunter2@db/fleet")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    for name in ("DB_PASS", "STRIPE_SK", "SERVICE_DSN", "UNREMARKABLE"):  # names no pattern would catch
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("LANG", "C.UTF-8")
    result = run_tests(repo.path, "env", timeout=30, report_dir=tmp_path / "r")
    assert "secret" not in result.output and "hunter2" not in result.output
    assert "LANG=C.UTF-8" in result.output and "FLEET_JUNIT_XML=" in result.output
    assert f"HOME={tmp_path / 'r' / 'home'}" in result.output
    env = {"MY_TOKEN": "t0k", "A": "b", "DECLARED": "d", "FLEET_PORT_BASE": "20000"}
    given = run_tests(repo.path, "env", timeout=30, report_dir=tmp_path / "r", env=env, env_names=["DECLARED"])
    assert "t0k" not in given.output and "A=b" not in given.output
    assert "DECLARED=d" in given.output and "FLEET_PORT_BASE=20000" in given.output
