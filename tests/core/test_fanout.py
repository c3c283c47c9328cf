"""Best-of-N: every run verified on its own, the best verified diff first, --until first stops the rest."""

from __future__ import annotations

import time

from tests.core.conftest import Fleet, processes_with, scripted


def test_one_good_and_two_bad_runs_put_exactly_the_good_diff_in_review(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("by-run", "never", "fix-add", "never"),
        "--fanout",
        "3",
        "--attempts",
        "1",
    )
    fleet.up()
    shown = fleet.json("review", "show", str(ticket["id"]))
    assert [(c["run"], c["verdict"]) for c in shown["candidates"]] == [(2, "passed")]
    runs = fleet.json("show", str(ticket["id"]))["runs"]
    assert [r["status"] for r in runs] == ["failed", "passed", "failed"]
    [row] = fleet.json("stats")
    assert (row["agent"], row["tickets"], row["runs"], row["verified"]) == ("shell", 1, 3, 1)
    assert (row["verified_rate"], row["attempts_per_verified"]) == (0.333, 3.0)


def test_candidates_are_ranked_smaller_diff_first(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("by-run", "fix-add+fix-div", "fix-add"),
        "--fanout",
        "2",
        "--attempts",
        "1",
    )
    fleet.up()
    shown = fleet.json("review", "show", str(ticket["id"]))
    assert [c["run"] for c in shown["candidates"]] == [2, 1]
    assert [c["diff_stat"] for c in shown["candidates"]] == ["1 file, +1 -1", "1 file, +2 -2"]
    second = fleet.run("review", "show", str(ticket["id"]), "--candidate", "2").stdout
    assert "candidate 2: attempt 1 of run 1" in second and "return a / b" in second


def test_until_first_stops_the_sibling_runs_at_the_first_pass(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    marker = f"sleep:60.{abs(hash(fleet.tmp)) % 100000}"
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("by-run", marker, "fix-add", marker),
        "--fanout",
        "3",
        "--attempts",
        "1",
        "--until",
        "first",
    )
    started = time.monotonic()
    fleet.up(concurrency=4)
    assert time.monotonic() - started < 45  # the 60 s siblings did not run out their time
    shown = fleet.json("show", str(ticket["id"]))
    assert shown["status"] == "needs_review"
    assert [r["status"] for r in shown["runs"]] == ["cancelled", "passed", "cancelled"]
    assert processes_with(marker.replace(":", " ")) == []
