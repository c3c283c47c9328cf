"""`fleet export`: the three formats validate against their schemas, preference pairs come from one ticket's
fan-out, a verified attempt a reviewer rejected is never chosen, secrets are redacted, `export = false` holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exportschema import FORMATS, problems
from tests.conftest import Fleet
from tests.core.conftest import scripted
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

pytestmark = pytest.mark.slow
FIX_ADD = "workers.agents.scripted_class:FixAdd"
KEY = "sk-ant-" + "a1B2c3D4e5" * 3
TOKEN_VALUE = "hunter2-but-longer"


def export(fleet: Fleet, fmt: str, *args: str) -> list[dict[str, Any]]:
    out = fleet.tmp / f"{fmt}.jsonl"
    fleet.run("export", "--format", fmt, "--out", str(out), *args)
    return [json.loads(line) for line in out.read_text().splitlines()]


def submit(fleet: Fleet, repo: str, title: str, command: str) -> int:
    body = f"Fix add. Our key is {KEY} and the deploy token {TOKEN_VALUE}."
    args = ["--repo", repo, "--title", title, "--body", body, "--agent", "shell", "--agent", FIX_ADD]
    [ticket] = fleet.submit(
        *args, "--agent-cmd", command, "--attempts", "1", "--target", "tests/test_calc.py::test_add"
    )
    return int(ticket["id"])


def test_export_formats_pairs_reviews_redaction_and_opt_out(both_modes: Fleet) -> None:
    fleet = both_modes
    fleet.env["FLEET_AGENT_CLASSES"] = json.dumps([FIX_ADD])
    fleet.env["DEPLOY_TOKEN"] = TOKEN_VALUE  # a secret-named variable: its value is redacted wherever it shows
    fleet.sample_repo()
    private = fleet.tmp / "private"
    write_sample_repo(private)
    fleet.run("repo", "add", "private", str(private), "--test-cmd", SAMPLE_TEST_CMD, "--no-export")
    gamed = submit(fleet, "calc", "gamed against verified", scripted("game-edit-test"))
    rejected = submit(fleet, "calc", "failed against a rejected one", scripted("fix-div"))
    hidden = submit(fleet, "private", "never exported", scripted("fix-div"))
    fleet.up()
    fleet.run("review", "reject", str(rejected))

    records = {fmt: export(fleet, fmt) for fmt in FORMATS}
    for fmt, items in records.items():
        assert items, fmt
        for record in items:
            assert problems(record, fmt) == [], (fmt, record)
    trajectories = {r["id"]: r for r in records["trajectories"]}
    assert {r["ticket_id"] for r in trajectories.values()} == {gamed, rejected}  # export = false: nothing of hidden
    assert hidden not in {r["ticket_id"] for r in trajectories.values()}
    verdicts = sorted(
        (r["ticket_id"], r["agent"], r["verdict"], r["reward"], r["gamed"]) for r in trajectories.values()
    )
    assert verdicts == sorted(
        [
            (gamed, FIX_ADD, "passed", 1, False),
            (gamed, "shell", "gamed", 0, True),
            (rejected, FIX_ADD, "passed", 1, False),
            (rejected, "shell", "failed", 0, False),
        ]
    )
    [verified_rejected] = [r for r in trajectories.values() if r["ticket_id"] == rejected and r["reward"] == 1]
    assert [r["decision"] for r in verified_rejected["reviews"]] == ["rejected"]
    assert all(r["tokens_in"] > 0 for r in trajectories.values() if r["agent"] == FIX_ADD)

    [pair] = records["preference"]  # ticket `rejected` gives none: its only verified diff was rejected
    meta = pair["metadata"]
    assert meta["ticket_id"] == gamed and meta["rejected_verdict"] == "gamed"
    assert trajectories[meta["chosen_attempt"]]["ticket_id"] == trajectories[meta["rejected_attempt"]]["ticket_id"]
    assert meta["chosen_attempt"] != verified_rejected["id"]
    assert "return a + b" in pair["preferred_output"][0]["content"]
    [example] = records["sft"]
    assert example["messages"][1]["content"] == trajectories[meta["chosen_attempt"]]["prompt"]

    text = "".join(Path(fleet.tmp / f"{fmt}.jsonl").read_text() for fmt in FORMATS)
    assert KEY not in text and TOKEN_VALUE not in text and "[redacted]" in text
    assert export(fleet, "trajectories", "--exclude-repo", "calc") == []
    assert export(fleet, "trajectories", "--repo", "private") == []
