"""`fleet tasks mine` on two real projects' histories, built offline; the task set then runs through
`fleet eval run` with an agent that applies the gold patches: Fleet's verdict is SWE-bench's resolved."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from db.taskspec import read_tasks
from tests.conftest import Fleet
from tests.evals.histories import replay
from workers.agents.scripted import SAMPLE_TEST_CMD

pytestmark = pytest.mark.slow
ORACLE = Path(__file__).with_name("oracle.py")


def mine(fleet: Fleet, project: str, mutations: int, seed: int = 7) -> tuple[Path, list[str]]:
    repo = fleet.tmp / project
    history = replay(repo, project)
    fleet.run("repo", "add", project, str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--no-agent-sandbox")
    out = fleet.tmp / f"{project}.jsonl"
    args = ["--since", "2026-10-01", "--seed", str(seed), "--mutations", str(mutations)]
    fleet.run("tasks", "mine", "--repo", project, "--out", str(out), *args)
    return out, history


def test_mined_task_sets_from_two_projects_verify_and_agree_with_the_reference(embedded: Fleet) -> None:
    ini, ini_history = mine(embedded, "iniconfig", mutations=6)
    six, six_history = mine(embedded, "six", mutations=5)
    tasks = read_tasks(ini) + read_tasks(six)
    assert len(tasks) >= 20
    history = [t for t in tasks if t.source == "history"]
    # every fix-with-a-test commit became a task: its parent as base, the commit's tests as the hidden test patch
    assert sorted(t.instance_id.split("__")[1] for t in history) == sorted(s[:12] for s in ini_history + six_history)
    for task in history:
        added = {line[6:] for line in task.test_patch.splitlines() if line.startswith("+++ b/")}
        assert added and all(
            t.split("::")[0] in added or "test_six.py" in t or "test_iniconfig" in t for t in task.FAIL_TO_PASS
        )
        assert not any(p.split("::")[0] in added for p in task.PASS_TO_PASS)
    assert {t.source for t in tasks} == {"history", "mutation"}
    # deterministic with a seed: mining again gives the same task set
    again = embedded.tmp / "again.jsonl"
    embedded.run(
        "tasks",
        "mine",
        "--repo",
        "iniconfig",
        "--out",
        str(again),
        "--since",
        "2026-10-01",
        "--seed",
        "7",
        "--mutations",
        "6",
    )
    assert again.read_text() == ini.read_text()

    combined = embedded.tmp / "all.jsonl"
    combined.write_text(ini.read_text() + six.read_text())
    patches = embedded.tmp / "patches.json"
    patches.write_text(json.dumps({t.instance_id: t.model_dump() for t in tasks}))
    oracle = shlex.join([sys.executable, str(ORACLE), str(patches)])
    gamer = shlex.join([sys.executable, str(ORACLE), str(patches), "--tests-only"])
    embedded.run(
        "eval", "run", str(combined), "--agent", f"gold={oracle}", "--agent", f"gamed-gold={gamer}", "--name", "mined"
    )
    embedded.up()
    report = embedded.json("eval", "report", "mined")
    rows = {row["agent"]: row for row in report["agents"]}
    gold = rows["gold"]
    assert gold["pass_at"] == {"1": 1.0} and gold["solved"] == len(tasks), (gold, report["agreement"])
    assert rows["gamed-gold"]["solved"] == 0 and rows["gamed-gold"]["verdicts"].get("gamed", 0) >= 1
    counts = report["agreement"]["counts"]
    assert counts.get("disagree", 0) == 0 and counts.get("excluded", 0) == 0
