"""Helpers for the end-to-end verification tests: a Fleet for any fixture scope, and `fleet show` in bulk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    """`fleet show ID --json` for each ticket, run side by side (each CLI start costs over a second)."""
    procs = {
        tid: subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "show", str(tid), "--json"],
            env=fleet.env,
            cwd=fleet.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tid in ticket_ids
    }
    shown = {}
    for tid, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"fleet show {tid} exited {proc.returncode}: {err}"
        shown[tid] = json.loads(out)
    return shown


def only_attempt(shown: dict[str, Any]) -> dict[str, Any]:
    """The single attempt of a one-run, one-attempt ticket."""
    [attempt] = [a for run in shown["runs"] for a in run["attempts"]]
    return attempt
