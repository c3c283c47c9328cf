"""Run a repository's test command once and collect per-test results from a JUnit report.

The command is the operator's trusted configuration, run as `/bin/sh -c command` in the checkout.
pytest is made to write a JUnit report through PYTEST_ADDOPTS. Any other tool should write JUnit XML to
`$FLEET_JUNIT_XML` (or any `*.xml` file directly in `$FLEET_REPORT_DIR`); without a report, only the exit
code is known and the verdict is weaker.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from system.credentials import CREDENTIAL_VARIABLES, SECRET_NAME, passable, withheld, withheld_line
from system.files import remove_tree
from system.process import ProcessResult, run_process
from system.sandbox import scratch_env
from verification import channel as results_channel
from verification.channel import Channel
from verification.report import Outcome, ReportError, TestResult, parse_junit

JUNIT_NAME = "junit.xml"
# Raised whenever how tests are run changes what a run reports (safe path, plugin, channel, the setup before the
# hidden tests, the test files a run wrote as it ran), so cached baselines taken the old way are not compared with
# new runs.
RUNNER_REVISION = 4
# Variables from the caller's environment that would change how pytest reads its configuration or results.
_DROPPED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST", "PYTEST_VERSION")
# The only variables that reach the code under test from the worker, besides the repository's `test_env`
# names and the attempt's port block: an allow-list, never "everything that does not look secret".
TEST_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "USER", "LOGNAME")
PORT_PREFIX = "FLEET_PORT_"
_NOT_FOUND = re.compile(r"([^\s:]+): (?:command )?not found")
_PYTEST_OUTPUT = re.compile(
    r"=+ test session starts =+|^=*\s*(\d+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed),? ?)+"
    r".* in [\d.]+s",
    re.MULTILINE,
)


@dataclass
class TestRun:
    """One run of the test command: per-test results when a report was written, and how the command ended."""

    __test__ = False  # not a pytest test class, despite the name

    results: dict[str, TestResult]
    exit_code: int | None
    report_found: bool
    output: str
    duration: float
    timed_out: bool = False
    error: str | None = None
    expects_report: bool = False
    report_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    channel: Channel | None = None  # what Fleet's pytest plugin saw (None: the command was not given one)
    written: list[str] = field(default_factory=list)  # files pytest collected that the run itself wrote (stored)

    @property
    def failures(self) -> list[str]:
        """Ids of tests that failed or errored."""
        return sorted(tid for tid, result in self.results.items() if result.bad)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the baseline is cached in the database)."""
        results = [[r.test_id, r.outcome.value, r.message, r.details] for r in self.results.values()]
        return {
            "results": results,
            "exit_code": self.exit_code,
            "report_found": self.report_found,
            "output": self.output,
            "duration": self.duration,
            "timed_out": self.timed_out,
            "error": self.error,
            "expects_report": self.expects_report,
            "report_error": self.report_error,
            "warnings": list(self.warnings),
            "channel": self.channel.to_json() if self.channel is not None else None,
            "written": list(self.written),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TestRun:
        """Rebuild a TestRun from to_json()'s dict."""
        results = {tid: TestResult(tid, Outcome(o), m, x) for tid, o, m, x in d["results"]}
        return cls(
            results=results,
            exit_code=d["exit_code"],
            report_found=d["report_found"],
            output=d["output"],
            duration=d["duration"],
            timed_out=d.get("timed_out", False),
            error=d.get("error"),
            expects_report=d.get("expects_report", False),
            report_error=d.get("report_error"),
            warnings=list(d.get("warnings", [])),
            channel=Channel.from_json(d.get("channel")),
            written=list(d.get("written", [])),
        )


def run_tests(
    checkout: Path,
    command: str,
    *,
    timeout: float,
    report_dir: Path,
    env: Mapping[str, str] | None = None,
    env_names: Sequence[str] = (),
    granted_names: Sequence[str] = (),
    cancelled: threading.Event | None = None,
    limit_bytes: int = 64_000,
    pytest_args: Sequence[str] = (),
    wrapper: Sequence[str] = (),
    show_runner: bool = False,
) -> TestRun:
    """Run `command` in checkout under `/bin/sh -c` and read the JUnit report it leaves in report_dir.

    Of env (default: this process's) only TEST_ENV_NAMES, env_names and the port block reach the command, and of
    env_names those shaped like a secret's only when granted_names (the operator's) holds them too; report_dir must
    not be shared by concurrent runs, and its top-level *.xml files are deleted first.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    _clear_reports(report_dir)
    base = env if env is not None else os.environ
    run_env = build_env(allowed_env(base, env_names, granted_names), report_dir, pytest_args)
    argv = [*wrapper, "/bin/sh", "-c", command]
    if "pytest" in command:  # not for other runners: `python manage.py test` needs its script's folder
        run_env["PYTHONSAFEPATH"] = "1"
    started_ns = time.time_ns()
    with results_channel.opened() as (fd, handle):
        run_env[results_channel.FD_VAR] = str(fd)
        if show_runner:  # Fleet's plugin then leaves the runner's variables visible to the code under test
            run_env[results_channel.SHOW_VAR] = "1"
        proc = run_process(
            argv,
            cwd=checkout,
            env=run_env,
            timeout=timeout,
            cancelled=cancelled,
            limit_bytes=limit_bytes,
            pass_fds=(fd,),
        )
        seen = results_channel.read(handle)
    run = _collect(proc, command, timeout, report_dir, checkout)
    run.channel = seen
    run.written = results_channel.written_since(checkout, seen.files, started_ns)
    if dropped := withheld(env_names, granted_names):
        run.warnings.append(withheld_line("test_env", dropped))
    return run


def build_env(base: Mapping[str, str], report_dir: Path, pytest_args: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a test run: base minus pytest overrides, plus the report and determinism knobs."""
    junit = report_dir / JUNIT_NAME
    addopts = [
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "-p",
        results_channel.PLUGIN_NAME,
        *pytest_args,
    ]
    run_env = {k: v for k, v in base.items() if k not in _DROPPED_ENV} | scratch_env(report_dir)
    # Fleet's plugin comes from outside the checkout. With PYTHONSAFEPATH (set for pytest commands) no checkout
    # folder is on the runner's import path while pytest starts; the plugin gives `python -m pytest` its folder
    # back for the project's imports once the runner is loaded.
    plugin_path = [str(results_channel.PLUGIN_DIR), *filter(None, [base.get("PYTHONPATH", "")])]
    run_env.update(
        PYTHONPATH=os.pathsep.join(plugin_path),
        PYTEST_ADDOPTS=shlex.join(addopts),
        FLEET_JUNIT_XML=str(junit),
        FLEET_REPORT_DIR=str(report_dir),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
        TZ="UTC",
    )
    return run_env


def allowed_env(base: Mapping[str, str], names: Sequence[str] = (), granted: Sequence[str] = ()) -> dict[str, str]:
    """The variables of base that code under test may see: TEST_ENV_NAMES, names (of those shaped like a secret's,
    only the granted ones: a repository's settings stored before its `.fleet.toml` was checked may hold others), and
    the port block."""
    wanted = {*TEST_ENV_NAMES, *passable(names, granted)} - CREDENTIAL_VARIABLES
    return {k: v for k, v in base.items() if k in wanted or k.startswith(PORT_PREFIX)}


def scrubbed_env(base: Mapping[str, str]) -> dict[str, str]:
    """base without Fleet's own settings and anything named like a credential: tests run the agent's code."""
    return {k: v for k, v in base.items() if not SECRET_NAME.search(k)}


def _clear_reports(report_dir: Path) -> None:
    for stale in report_dir.glob("*.xml"):
        remove_tree(stale)  # an earlier run's, whatever it is: a folder, a link (never followed)


def _collect(proc: ProcessResult, command: str, timeout: float, report_dir: Path, root: Path) -> TestRun:
    run = TestRun(
        results={},
        exit_code=proc.exit_code,
        report_found=False,
        output=proc.output,
        duration=proc.duration,
        timed_out=proc.timed_out,
        error=_error(proc, command, timeout),
        expects_report=looks_like_pytest(command, proc.output),
    )
    if any(report_dir.glob("*.xml")):
        try:
            run.results = parse_junit(report_dir, root=root)
            run.report_found = True
        except ReportError as exc:
            run.report_error = str(exc)
    return run


def _error(proc: ProcessResult, command: str, timeout: float) -> str | None:
    if proc.sandbox_failed:
        return proc.sandbox_error
    if proc.not_found:
        return f"cannot start the test command: {proc.output}"
    if proc.cancelled:
        return "cancelled"
    if proc.timed_out:
        return f"test command timed out after {timeout:g}s"
    if proc.exit_code in (126, 127) and re.search(r"not found|No such file|Permission denied", proc.output):
        named = _NOT_FOUND.search(proc.output)
        return f"test command not found: {named.group(1) if named else first_word(command)}"
    return None


def first_word(command: str) -> str:
    """The program a shell command starts (for messages only)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0] if words else command


# pytest's last line: `3 failed, 1 passed, 2 warnings in 0.10s` (with `=` rules unless -q; maybe `(0:01:02)`).
_SUMMARY_LINE = re.compile(r"^=*\s*(\d+ [a-z ]+(?:, \d+ [a-z ]+)*) in [\d.]+s\b[^=\n]*=*\s*$", re.MULTILINE)


def pytest_summary(output: str) -> tuple[str, dict[str, int]] | None:
    """pytest's final summary line in output (the last one) and its counts by word; None when there is none."""
    found = list(_SUMMARY_LINE.finditer(output))
    if not found:
        return None
    last = found[-1]
    counts: dict[str, int] = {}
    for part in last.group(1).split(", "):
        number, word = part.split(" ", 1)
        counts[word.strip()] = counts.get(word.strip(), 0) + int(number)
    return last.group(0).strip(" =\n"), counts


def looks_like_pytest(command: str, output: str) -> bool:
    """True when the command names pytest or its output has pytest's header or summary line."""
    return "pytest" in command or bool(_PYTEST_OUTPUT.search(output))
