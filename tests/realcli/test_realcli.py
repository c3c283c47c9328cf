"""Each real agent CLI through Fleet: it fixes the bug, a crash and a refused key are errors, usage is what was billed.

Run with `pytest -m realcli tests/realcli` (the first run installs the CLIs into the cache).
"""

from __future__ import annotations

import re

import pytest

from tests.realcli.conftest import Outcome, attempts

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(1200)]

STEPS = {  # as `fleet logs` renders each CLI's events, one line per step
    "claude-code": ("→ Read file_path=", "old_string=return a - b, new_string=return a + b"),
    "codex": ("edited ", "[turn.completed: input_tokens="),
    "opencode": ("→ read filePath=", "→ edit filePath="),
    "gemini": ("→ replace file_path=", "← success"),
    "aider": ("Applied edit to calc.py",),
    "mini-swe-agent": ("sed -i",),
}


def test_the_cli_fixes_the_bug_and_passes(outcome: Outcome) -> None:
    [attempt] = attempts(outcome.fixed)
    assert (attempt["verdict"], attempt["error"]) == ("passed", None)
    assert outcome.fixed["status"] == "needs_review"
    assert attempt["diff_stat"] == "1 file, +1 -1"


def test_a_crash_is_an_error_quoting_its_reason_and_not_retried(outcome: Outcome) -> None:
    [attempt] = attempts(outcome.crashed)  # two attempts allowed: the crash used one, and stopped the run
    assert attempt["verdict"] == "error"
    assert f"{outcome.cli} exited with code" in attempt["error"]
    assert re.search(r"no.such.flag|unknown|unrecognized|not allowed|usage", attempt["error"], re.I), attempt["error"]
    assert outcome.crashed["status"] == "error"


def test_a_refused_key_is_an_error_and_not_retried(outcome: Outcome) -> None:
    [attempt] = attempts(outcome.refused)
    assert attempt["verdict"] == "error"
    assert re.search(r"401|api.key|authenticat|unauthori", attempt["error"], re.I), attempt["error"]
    assert outcome.refused["status"] == "error"


def test_the_tokens_recorded_are_what_the_server_billed(outcome: Outcome) -> None:
    """The gateway meters the traffic: side calls a CLI leaves out of its output (opencode's title) count too."""
    [attempt] = attempts(outcome.fixed)
    assert (attempt["tokens_in"], attempt["tokens_out"]) == outcome.billed[:2]


def test_the_cost_recorded_is_what_the_server_billed(outcome: Outcome) -> None:
    """Priced by the gateway's table (the suite prices its models as the server bills them), not by the CLI."""
    [attempt] = attempts(outcome.fixed)
    assert attempt["cost_usd"] == pytest.approx(outcome.billed[2], rel=1e-6)


def test_the_transcript_keeps_the_steps(outcome: Outcome) -> None:
    [attempt] = attempts(outcome.fixed)
    logs = outcome.fleet.run("logs", str(attempt["id"])).stdout
    for step in STEPS[outcome.cli]:
        assert step in logs, step
