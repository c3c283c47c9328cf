"""The results channel: what Fleet's pytest plugin (verification/plugin/) saw, compared with the JUnit report.

The plugin writes one JSON line per test phase to a descriptor Fleet opens and passes to the test command: an
unlinked file outside every folder the code under test can name. A runner that was replaced, or a report and a
summary rewritten to agree with each other, disagree with this channel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from verification.report import TestResult

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
PLUGIN_NAME = "fleet_report_plugin"
FD_VAR = "FLEET_RESULTS_FD"
SHOW_VAR = "FLEET_SHOW_RUNNER"
MIN_FD = 10  # above the descriptors the sandbox's own scripts open (the seccomp filter is 3)
MAX_CHANNEL_BYTES = 64_000_000
PASSES = ("passed", "xpassed")
RERUN = "rerun"
_SEVERITY = {"passed": 0, "xpassed": 0, "xfailed": 1, "skipped": 2, "failed": 3}
CHANNEL_RULE = "results channel"


@dataclass
class Channel:
    """What the plugin reported: its sessions, each test's worst outcome over its phases, and the test collected
    last (where a canary runs last in a run that stops at failures: verification/canary.py)."""

    sessions: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)
    last: str | None = None
    collected: int | None = field(default=None, compare=False)  # how many tests were to run (not stored)
    # The files tests and conftests came from, each with its ctime when pytest read it (None: unknown); not stored.
    files: dict[str, int | None] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, object]:
        last = {} if self.last is None else {"last": self.last}  # a baseline's: a verified run's is withdrawn
        return {"sessions": self.sessions, "outcomes": self.outcomes, **last}

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Channel | None:
        if data is None:
            return None
        outcomes = data.get("outcomes", {})
        sessions = data.get("sessions", 0)
        last = data.get("last")
        return cls(
            int(sessions) if isinstance(sessions, int) else 0,
            dict(outcomes) if isinstance(outcomes, dict) else {},
            last if isinstance(last, str) else None,
        )


@contextlib.contextmanager
def opened() -> Iterator[tuple[int, IO[bytes]]]:
    """An unlinked file for the plugin to write to, as a descriptor (>= MIN_FD) to pass to the command."""
    with tempfile.TemporaryFile() as handle:
        fd = fcntl.fcntl(handle.fileno(), fcntl.F_DUPFD_CLOEXEC, MIN_FD)
        try:
            yield fd, handle
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


def read(handle: IO[bytes]) -> Channel:
    """Parse what the plugin wrote (lines that are not its JSON are ignored: they cannot be its)."""
    handle.seek(0)
    channel = Channel()
    for line in handle.read(MAX_CHANNEL_BYTES).splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if not isinstance(message, dict):
                continue
            if message.get("event") == "start":
                channel.sessions += 1
            elif message.get("event") == "test":
                _merge(channel.outcomes, str(message.get("id")), str(message.get("outcome")))
            elif message.get("event") == "file":
                ctime = message.get("ctime_ns")
                channel.files[str(message.get("path"))] = ctime if isinstance(ctime, int) else None
            elif message.get("event") == "collected":
                channel.last = str(message.get("last"))
                count = message.get("count")
                channel.collected = count if isinstance(count, int) else None
    return channel


def _merge(outcomes: dict[str, str], test_id: str, outcome: str) -> None:
    if outcome == RERUN:
        return  # pytest-rerunfailures reports a retried attempt so; the last attempt's outcome follows
    before = outcomes.get(test_id)
    if before is None or _SEVERITY.get(outcome, 3) > _SEVERITY.get(before, 3):
        outcomes[test_id] = outcome


def disagreement(channel: Channel | None, results: Mapping[str, TestResult]) -> str | None:
    """Why the JUnit results cannot be pytest's: no channel at all, a pass the channel did not see, or more
    passes than the channel counted. None when they agree."""
    if channel is None or channel.sessions == 0:
        return (
            "pytest ran but Fleet's own pytest plugin reported nothing: the test runner was not the "
            "environment's pytest (a module in the diff replaced it, or the run was cut short)"
        )
    for test_id, result in results.items():
        seen = channel.outcomes.get(test_id)
        if result.ok and seen is not None and seen not in PASSES:
            return f"the test report says {test_id} passed but Fleet's plugin saw it {seen}"
    passed = sum(1 for outcome in channel.outcomes.values() if outcome in PASSES)
    reported = sum(1 for result in results.values() if result.ok)
    if reported > passed:
        return f"the test report lists {reported} passed tests but Fleet's plugin saw {passed} pass"
    return None


def written_since(checkout: Path, files: Mapping[str, int | None], started_ns: int) -> list[str]:
    """The files of checkout that pytest collected from (files: their paths and ctimes, as the plugin read them)
    which were written after started_ns and before pytest read them: the code under test made them while the
    tests ran, so neither the restore of the protected files nor any check of the diff saw them. The kernel sets
    a file's ctime; nothing in the sandbox can set it back. What the run wrote after pytest read a file changed
    nothing pytest ran."""
    made = []
    for path, ctime in sorted(files.items()):
        relative = _inside(Path(path), checkout)
        if relative is not None and (ctime is None or ctime >= started_ns):  # outside: the environment's
            made.append(relative.as_posix())
    return made


def _inside(path: Path, checkout: Path) -> Path | None:
    for root in (checkout, checkout.resolve()):  # pytest names files from the real working folder
        with contextlib.suppress(ValueError):
            return path.relative_to(root)
    return None


def made_during(written: list[str]) -> str | None:
    """Why a run that collected tests or conftests the code under test wrote while it ran is not trusted."""
    if not written:
        return None
    return (
        f"the test run collected {', '.join(written[:5])}, which the code under test wrote while the tests ran: "
        "tests and conftest.py files come from the base commit and the diff, checked before the run"
    )
