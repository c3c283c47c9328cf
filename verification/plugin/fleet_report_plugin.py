"""Fleet's own pytest plugin: each test's outcome, written where the code under test cannot write.

Loaded by Fleet with `-p fleet_report_plugin` from this folder (on PYTHONPATH, outside the checkout). It takes
the file descriptor named by FLEET_RESULTS_FD before any conftest or project module is imported, moves it to a
new, non-inheritable number and closes the one it was given, so project code finds nothing at the announced
number. It also hides the runner's variables (every PYTEST_*) while fixtures and tests run,
so code that behaves differently under test cannot tell. Standalone: it imports nothing of Fleet.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

FD_VAR = "FLEET_RESULTS_FD"
SHOW_VAR = "FLEET_SHOW_RUNNER"  # set by Fleet for the run that compares: the runner's variables stay visible
# Fleet's variables for other runners; pytest is told where to write through its options instead.
HIDDEN_FROM_PROJECT = (FD_VAR, SHOW_VAR, "FLEET_JUNIT_XML", "FLEET_REPORT_DIR", "PYTHONSAFEPATH")
RUNNER_PREFIX = "PYTEST_"  # PYTEST_CURRENT_TEST, PYTEST_VERSION, PYTEST_ADDOPTS: read by pytest, not by tests
_lstat = os.lstat  # bound before any project code runs, which could rebind the module's
_channel: list[int] = []
_shown: list[bool] = []


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: Any, args: Any) -> None:
    """Before the first conftest: take the channel, drop Fleet's variables, and give `python -m pytest` its
    folder back on sys.path for the project's imports. Fleet runs it with PYTHONSAFEPATH, so pytest, its plugins
    and what they import at startup came from the environment; a later import of an environment module that
    the checkout would shadow is refused before the run (verification/shadow.py)."""
    given = os.environ.get(FD_VAR, "")
    _shown.append(os.environ.get(SHOW_VAR) == "1")
    for name in HIDDEN_FROM_PROJECT:
        os.environ.pop(name, None)
    if given.isdigit() and not _channel:
        try:
            _channel.append(os.dup(int(given)))  # dup makes a non-inheritable descriptor
            os.close(int(given))
        except OSError:
            pass
    if sys.argv and sys.argv[0].endswith("__main__.py") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # where `python -m` puts it: a stale installed copy must not win
    _send({"event": "start", "pid": os.getpid()})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome: str = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    _send({"event": "test", "id": report.nodeid, "when": report.when, "outcome": outcome})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _send({"event": "test", "id": report.nodeid, "when": "collect", "outcome": "failed"})


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Each file pytest collects from, with its ctime as pytest reads it: one the code under test wrote while the
    tests ran (a ctime after the run started, which only the kernel sets) is Fleet's to refuse."""
    if isinstance(collector, pytest.File):
        _send_file(str(collector.path))


def pytest_plugin_registered(plugin: object) -> None:
    """Each conftest.py pytest loads, for the same reason."""
    path = getattr(plugin, "__file__", None)
    if isinstance(path, str) and os.path.basename(path) == "conftest.py":
        _send_file(path)


def _send_file(path: str) -> None:
    try:
        ctime: int | None = _lstat(path).st_ctime_ns
    except OSError:
        ctime = None
    _send({"event": "file", "path": path, "ctime_ns": ctime})


def pytest_collection_finish(session: pytest.Session) -> None:
    """The test collected last, once every plugin and conftest has ordered and selected the tests."""
    last = session.items[-1].nodeid if session.items else ""
    _send({"event": "collected", "last": last, "count": len(session.items)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _send({"event": "finish", "exitstatus": int(exitstatus)})


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Generator[None, None, None]:
    with _traces_hidden():
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap each test's own call (functions, unittest methods, doctests alike) so it runs without PYTEST_*."""
    for item in items:
        item.runtest = _hidden(item.runtest)  # type: ignore[method-assign]


def _hidden(runtest: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with _traces_hidden():
            runtest()

    return run


class _traces_hidden:  # noqa: N801 - used as a context manager, named like one
    def __enter__(self) -> None:
        shown = bool(_shown and _shown[0])
        self.saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(RUNNER_PREFIX) and not shown}

    def __exit__(self, *exc: object) -> None:
        os.environ.update(self.saved)


def _send(message: dict[str, Any]) -> None:
    if _channel:
        with contextlib.suppress(OSError):
            os.write(_channel[0], (json.dumps(message) + "\n").encode())
