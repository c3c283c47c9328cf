"""Helpers for the end-to-end verification tests: a Fleet for any fixture scope, and `fleet show` in bulk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.core.conftest import Fleet

FAST_LEASES = {
    "FLEET_LEASE_SECONDS": "3",
    "FLEET_HEARTBEAT_SECONDS": "1",
    "FLEET_RECONCILE_SECONDS": "1",
    "FLEET_KILL_GRACE_SECONDS": "1",
    "FLEET_USER": "tester",
}


def embedded_fleet(tmp: Path) -> Fleet:
    """An embedded Fleet (SQLite, serverless broker) under tmp, like the `embedded` fixture but for any scope."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FLEET_HOME=str(tmp / "home"), **FAST_LEASES)
    return Fleet(home=tmp / "home", env=env, database_url=f"sqlite:///{tmp / 'home' / 'fleet.db'}", tmp=tmp)


def show_many(fleet: Fleet, ticket_ids: list[int]) -> dict[int, dict[str, Any]]:
    """`fleet show ID --json` for each ticket: the real Typer command, run in this process.

    Only reads go in-process; every command that changes state runs as its own `fleet` process. Starting
    the CLI costs over a second of imports, which for a corpus of tickets was a third of the folder's time.
    """
    from typer.testing import CliRunner

    from orchestrator.cli import app

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLEET_")}
    env.update(fleet.env)
    shown = {}
    for tid in ticket_ids:
        result = CliRunner().invoke(app, ["show", str(tid), "--json"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, f"fleet show {tid} exited {result.exit_code}: {result.output}"
        shown[tid] = json.loads(result.stdout)
    return shown


def only_attempt(shown: dict[str, Any]) -> dict[str, Any]:
    """The single attempt of a one-run, one-attempt ticket."""
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    return attempt
