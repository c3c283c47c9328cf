"""The first hour at the command line: where the state is, what submit refuses, help a newcomer can read."""

from __future__ import annotations

from tests.core.conftest import Fleet


def test_an_empty_home_says_where_it_looked(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "300"
    where = f"{fleet.home} (FLEET_HOME)"
    assert fleet.run("repo", "list").stdout.startswith(f"no repositories in {where}; add one with")
    queued = fleet.run("tickets", "--status", "queued").stdout
    assert queued.strip() == f"no tickets matching --status queued in {where}"
    assert fleet.run("status").stdout.startswith(f"state: {where}\n")
    assert fleet.json("tickets") == []
    assert sorted(p.name for p in fleet.tmp.iterdir()) == ["home"]
