"""`fleet demo`, the README's first command: four tickets, two verified diffs, a gaming agent caught."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_test_fleet
from tests.core.conftest import Fleet
from tests.core.test_bad_input import assert_one_line_error


def test_the_demo_shows_two_verified_diffs_and_catches_the_gaming_agent(embedded: Fleet) -> None:
    fleet = embedded
    out = fleet.run("demo").stdout
    assert "no AI model is involved" in out and "FLEET_LLM_BASE_URL" in out  # says plainly the model is scripted
    assert "2 verified diffs" in out
    tickets = {t["id"]: t for t in fleet.json("tickets")}
    verdicts = {
        ticket_id: [a["verdict"] for a in fleet.json("show", str(ticket_id))["runs"][0]["attempts"]]
        for ticket_id in tickets
    }
    assert [tickets[n]["status"] for n in (1, 2, 3, 4)] == ["needs_review", "needs_review", "failed", "failed"]
    assert verdicts[1] == ["passed"]
    assert verdicts[2] == ["failed", "passed"]  # right only after reading Fleet's feedback
    assert set(verdicts[3]) == {"gamed"}
    assert "passed" not in verdicts[4]
    assert [r["id"] for r in fleet.json("review", "list")] == [1, 2]
    assert sorted(p.name for p in fleet.tmp.iterdir()) == ["home"]  # nothing written into the folder it ran from
    # The scripted model server stopped with the demo: feedback to its llm ticket is refused at once, in one line.
    rejected = fleet.run("review", "reject", "2", "--feedback", "use a loop", check=False)
    stopped = "error: ticket 2 is a `fleet demo` ticket whose scripted model server (http://127.0.0.1:"
    assert_one_line_error(rejected, stopped, "stopped with the demo, so no new attempt could reach it")
    assert [r["id"] for r in fleet.json("review", "list")] == [1, 2]  # nothing recorded: still waiting for review


def test_a_newcomer_runs_the_demo_from_an_empty_folder_and_it_stays_empty(tmp_path: Path) -> None:
    folder, user = tmp_path / "folder", tmp_path / "user"
    folder.mkdir()
    fleet = make_test_fleet(folder)
    del fleet.env["FLEET_HOME"]
    fleet.env.pop("XDG_DATA_HOME", None)
    fleet.env["HOME"] = str(user)
    home = user / ".local" / "share" / "fleet"

    empty = fleet.run("tickets").stdout
    assert empty.strip() == f"no tickets in {home} (the default; FLEET_HOME overrides)"
    out = fleet.run("demo").stdout
    assert f"Fleet's state: {home}" in out
    fleet.env["COLUMNS"] = "200"
    listed = fleet.run("tickets").stdout
    assert "add() subtracts" in listed and "div() truncates" in listed
    assert list(folder.iterdir()) == []
    assert (home / "fleet.db").is_file()
