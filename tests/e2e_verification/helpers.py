"""Helpers for the end-to-end verification tests: a Fleet for any fixture scope, read-only commands in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Fleet, make_test_fleet


def embedded_fleet(tmp: Path) -> Fleet:
    """An embedded Fleet (SQLite, serverless broker) under tmp, like the `embedded` fixture but for any scope."""
    return make_test_fleet(tmp, FLEET_LEASE_SECONDS="3")


def read_json(fleet: Fleet, *args: str) -> Any:
    """`fleet ARGS --json` for a command that only reads, in this process (`Fleet.cli`)."""
    return json.loads(fleet.cli(*args, "--json").stdout)


def show_many(fleet: Fleet, ticket_ids: list[int]) -> dict[int, dict[str, Any]]:
    """`fleet show ID --json` for each ticket."""
    return {tid: read_json(fleet, "show", str(tid)) for tid in ticket_ids}


def only_attempt(shown: dict[str, Any]) -> dict[str, Any]:
    """The single attempt of a one-run, one-attempt ticket."""
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    return attempt
