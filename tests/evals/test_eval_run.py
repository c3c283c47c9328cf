"""`fleet eval run` end to end on the sample repository: three scripted agents of known skill give exactly the
pass@k their scripts imply; a gamed patch (it edits the tests) is gamed and counted apart; report and compare."""

from __future__ import annotations

import csv
import json
from math import comb
from pathlib import Path

import pytest

from tests.conftest import Fleet
from tests.core.conftest import scripted

pytestmark = pytest.mark.slow

HIDDEN = """diff --git a/tests/test_hidden.py b/tests/test_hidden.py
new file mode 100644
--- /dev/null
+++ b/tests/test_hidden.py
@@ -0,0 +1,8 @@
+import sys
+from pathlib import Path
+
+sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
+
+
+def test_add_zero():
+    from calc import add; assert add(0, 4) == 4
"""
SAMPLES = 3


def task_set(path: Path, base: str) -> Path:
    rows = [
        {
            "instance_id": "calc__add",
            "repo": "sample/calc",
            "base_commit": base,
            "problem_statement": "add() subtracts.",
            "FAIL_TO_PASS": ["tests/test_calc.py::test_add", "tests/test_hidden.py::test_add_zero"],
            "PASS_TO_PASS": json.dumps(["tests/test_calc.py::test_neg"]),  # as SWE-bench's datasets store it
            "test_patch": HIDDEN,
        },
        {
            "instance_id": "calc__mul",
            "repo": "calc",
            "base_commit": base,
            "problem_statement": "mul() is off by one.",
            "FAIL_TO_PASS": ["tests/test_calc.py::test_mul"],
            "PASS_TO_PASS": ["tests/test_calc.py::test_neg"],
        },
        {
            "instance_id": "calc__div",
            "repo": "calc",
            "base_commit": base,
            "problem_statement": "div() rounds down.",
            "FAIL_TO_PASS": ["tests/test_calc.py::test_div"],
            "PASS_TO_PASS": ["tests/test_calc.py::test_neg"],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def expected(correct: list[int], k: int) -> float:
    """The mean over tasks of 1 - C(n-c, k)/C(n, k), computed here independently of Fleet."""
    return round(sum(1 - comb(SAMPLES - c, k) / comb(SAMPLES, k) for c in correct) / len(correct), 4)


def test_three_agents_give_the_pass_at_k_their_scripts_imply(fleet: Fleet) -> None:
    embedded = fleet  # both modes: SQLite and the serverless broker, PostgreSQL and Redis
    repo = embedded.sample_repo()
    base = (repo / ".git" / "refs" / "heads" / "main").read_text().strip()
    tasks = task_set(embedded.tmp / "tasks.jsonl", base)
    agents = {
        "strong": scripted("fix-all"),  # every task, every sample
        "lucky": scripted("when", f"(sample 1 of {SAMPLES})", "fix-all"),  # every task, one sample in three
        "weak": scripted("fix-add"),  # only the add task
        "gamer": scripted("game-edit-test"),  # edits test_add's expected value: gamed
    }
    args = [a for label, cmd in agents.items() for a in ("--agent", f"{label}={cmd}")]
    embedded.run("eval", "run", str(tasks), *args, "--samples", str(SAMPLES), "--name", "nightly")
    embedded.up()
    report = embedded.json("eval", "report", "nightly")
    rows = {row["agent"]: row for row in report["agents"]}

    assert rows["strong"]["pass_at"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert rows["lucky"]["pass_at"] == {str(k): expected([1, 1, 1], k) for k in (1, 2, 3)}
    assert rows["lucky"]["pass_at"]["2"] == round(2 / 3, 4)
    assert rows["weak"]["pass_at"] == {str(k): expected([3, 0, 0], k) for k in (1, 2, 3)}
    assert rows["weak"]["verdicts"] == {"passed": 3, "failed": 6}
    # The gamed patch is counted apart, by its rule, and the report says where Fleet is stricter than SWE-bench.
    gamer = rows["gamer"]
    assert gamer["verdicts"] == {"gamed": 3 * SAMPLES} and gamer["solved"] == 0 and gamer["pass_at"]["3"] == 0
    [(rule, count)] = gamer["gamed_by_rule"].items()
    assert "protected test files" in rule and count == 3 * SAMPLES
    assert report["agreement"]["counts"] == {"agree": 3 * 3 * SAMPLES, "stricter": 3 * SAMPLES}

    markdown, table = embedded.tmp / "report.md", embedded.tmp / "report.csv"
    embedded.run("eval", "report", "nightly", "--markdown", str(markdown), "--csv", str(table))
    assert "| strong | - | 1 | 1 | 1 |" in markdown.read_text() and "Fleet stricter 9" in markdown.read_text()
    assert {r["agent"] for r in csv.DictReader(table.open())} == set(agents)

    # compare: a second evaluation where the weak agent learned mul
    embedded.run("eval", "run", str(tasks), "--agent", f"weak={scripted('fix-all')}", "--name", "later")
    embedded.up()
    compared = embedded.json("eval", "compare", "nightly", "later")
    [weak] = [row for row in compared["agents"] if row["agent"] == "weak"]
    assert {c["task"] for c in weak["better"]} == {"calc__mul", "calc__div"} and weak["worse"] == []
