"""Cancel stops running agents within seconds and leaves no process behind; retry starts again."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from tests.core.conftest import Fleet, processes_with, scripted
from tests.core.test_recovery import wait_for


def test_cancel_during_an_agent_run_stops_it_and_retry_starts_again(fleet: Fleet) -> None:
    fleet.sample_repo()
    marker = f"sleep-{fleet.tmp.name}"
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("sleep", "60", marker),
    )
    worker = fleet.popen("up", "--until-idle", "--concurrency", "2")
    try:
        wait_for(lambda: processes_with(marker) != [], timeout=60)
        started = time.monotonic()
        fleet.run("cancel", str(ticket["id"]))
        wait_for(lambda: processes_with(marker) == [], timeout=15)
        assert time.monotonic() - started < 10
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    shown = fleet.json("show", str(ticket["id"]))
    assert (shown["status"], shown["cancelled_by"]) == ("cancelled", "tester")
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    assert attempt["status"] == "cancelled"
    assert fleet.json("review", "list") == []

    fleet.run("retry", str(ticket["id"]))
    with fleet.db().session() as s:
        from db import queries

        [again] = queries.open_attempts(s, ticket["id"])
        assert again.number == 2


def test_cancel_during_verification_stops_the_test_run(embedded: Fleet) -> None:
    fleet = embedded
    from workers.agents.scripted import write_sample_repo

    write_sample_repo(fleet.tmp / "slow")
    marker = f"59.{abs(hash(fleet.tmp)) % 100000}"
    fleet.run("repo", "add", "slow", str(fleet.tmp / "slow"), "--test-cmd", f"sleep {marker}")
    [ticket] = fleet.submit("--repo", "slow", "--title", "add", "--agent-cmd", scripted("fix-add"))
    worker = fleet.popen("up", "--until-idle", "--concurrency", "2")
    try:
        wait_for(lambda: processes_with(f"sleep {marker}") != [], timeout=60)
        fleet.run("cancel", str(ticket["id"]))
        wait_for(lambda: processes_with(f"sleep {marker}") == [], timeout=15)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    shown = fleet.json("show", str(ticket["id"]))
    assert shown["status"] == "cancelled"
    assert [a["status"] for run in shown["runs"] for a in run["attempts"]] == ["cancelled"]


def test_cancel_all_of_a_repo_records_who_cancelled(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    ids = [
        fleet.submit("--repo", "calc", "--title", f"t{n}", "--agent-cmd", scripted("fix-add"))[0]["id"]
        for n in range(2)
    ]
    assert fleet.run("cancel", "--all", check=False).returncode == 1
    out = fleet.run("cancel", "--all", "--repo", "calc", "--yes").stdout
    assert f"2 tickets of calc cancelled: {ids[0]}, {ids[1]}" in out
    assert {(t["status"], t["cancelled_by"]) for t in fleet.json("tickets")} == {("cancelled", "tester")}


def test_cancel_all_leaves_the_review_queue_alone_and_asks_first(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [reviewable] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add", "--agent-cmd", scripted("fix-add")
    )
    fleet.up()
    [queued] = fleet.submit("--repo", "calc", "--title", "later", "--agent-cmd", scripted("fix-add"))

    refused = fleet.run("cancel", "--all", "--repo", "calc", check=False)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.count("\n") == 1 and "--yes" in refused.stderr
    assert "Cancel 1 ticket of calc (1 waiting for review left alone" in refused.stderr

    done = fleet.json("cancel", "--all", "--repo", "calc", "--yes")
    assert done == {"cancelled": [queued["id"]], "left_for_review": 1}
    statuses = {t["id"]: t["status"] for t in fleet.json("tickets")}
    assert statuses == {reviewable["id"]: "needs_review", queued["id"]: "cancelled"}

    fleet.run("cancel", "--all", "--repo", "calc", "--include-review", "--yes")
    assert fleet.json("show", str(reviewable["id"]))["status"] == "cancelled"
    fleet.env["COLUMNS"] = "300"
    help_text = fleet.run("cancel", "--help").stdout
    assert "--include-review" in help_text and "not needs_review" in help_text


def test_cancel_all_in_a_terminal_asks_and_a_no_cancels_nothing(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [ticket] = fleet.submit("--repo", "calc", "--title", "t", "--agent-cmd", scripted("fix-add"))

    def answer(reply: str) -> str:
        leader, follower = pty.openpty()
        command = [sys.executable, "-m", "fleet", "cancel", "--all", "--repo", "calc"]
        proc = subprocess.Popen(command, env=fleet.env, cwd=fleet.tmp, stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        os.write(leader, reply.encode() + b"\n")
        proc.wait(timeout=60)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        os.close(leader)
        return shown.decode()

    assert "Cancel 1 ticket of calc? [y/N]" in answer("n")
    assert fleet.json("show", str(ticket["id"]))["status"] == "queued"
    assert "1 ticket of calc cancelled" in answer("y")
    assert fleet.json("show", str(ticket["id"]))["status"] == "cancelled"
