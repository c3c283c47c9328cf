"""An evaluation whose task cannot be verified (its test patch does not apply): the sample is an error, counted
by cause, left out of the agreement, and never exported as training data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Fleet
from tests.core.conftest import scripted

pytestmark = pytest.mark.slow
BROKEN_PATCH = (
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
    "@@ -1,1 +1,1 @@\n-no such line\n+nor this\n"
)


def test_an_unverifiable_task_is_an_error_by_cause(embedded: Fleet) -> None:
    repo = embedded.sample_repo()
    base = (repo / ".git" / "refs" / "heads" / "main").read_text().strip()
    task = {
        "instance_id": "calc__broken",
        "repo": "calc",
        "base_commit": base,
        "problem_statement": "add()",
        "FAIL_TO_PASS": ["tests/test_calc.py::test_add"],
        "test_patch": BROKEN_PATCH,
    }
    tasks = embedded.tmp / "tasks.jsonl"
    tasks.write_text(json.dumps(task) + "\n")
    embedded.run("eval", "run", str(tasks), "--agent", f"fixer={scripted('fix-all')}", "--name", "broken")
    embedded.up()
    report = embedded.json("eval", "report", "broken")
    [row] = report["agents"]
    assert row["pending"] == 0 and row["solved"] == 0 and row["error_rate"] == 1.0, row
    [(why, count)] = row["errors_by_cause"].items()
    assert count == 1 and why == "the tests could not run at the base commit: the hidden tests could not be added", row
    assert report["agreement"]["counts"] == {"excluded": 1}
    out = embedded.tmp / "t.jsonl"
    embedded.run("export", "--out", str(out))
    assert out.read_text() == ""
