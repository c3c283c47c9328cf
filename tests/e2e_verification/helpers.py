"""Helpers for the end-to-end verification tests: a Fleet for any fixture scope, read-only commands in-process."""

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


def read_json(fleet: Fleet, *args: str) -> Any:
    """`fleet ARGS --json` for a command that only reads: the real Typer command, run in this process.

    Every command that changes state runs as its own `fleet` process; reads run here because each CLI start
    costs over a second of imports, which for a corpus of tickets was a third of the folder's time.
    """
    from typer.testing import CliRunner

    from fleet.cli import app

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLEET_")}
    env.update(fleet.env)
    result = CliRunner().invoke(app, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, f"fleet {' '.join(args)} exited {result.exit_code}: {result.output}"
    return json.loads(result.stdout)


def show_many(fleet: Fleet, ticket_ids: list[int]) -> dict[int, dict[str, Any]]:
    """`fleet show ID --json` for each ticket."""
    return {tid: read_json(fleet, "show", str(tid)) for tid in ticket_ids}


def only_attempt(shown: dict[str, Any]) -> dict[str, Any]:
    """The single attempt of a one-run, one-attempt ticket."""
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    return attempt
