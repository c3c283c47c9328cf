"""Helpers for the core end-to-end tests; the Fleet and its fixtures are in tests/conftest.py."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.conftest import Fleet
from workers.agents.scripted import scripted_command

__all__ = ["SCRIPTED", "Fleet", "processes_with", "scripted"]

SCRIPTED = list(scripted_command("")[:-1])


def scripted(script: str, *args: str) -> str:
    return shlex.join(scripted_command(script, *args))


def processes_with(marker: str) -> list[str]:
    """Command lines of live processes that mention marker (psutil is not a dependency: read /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if marker in text:
            found.append(text)
    return found


def verified_then_queued(fleet: Fleet, diffs: dict[str, str], *options: str) -> list[str]:
    """A ticket per title of diffs (its agent command), each verified alone and then queued for the merge queue in
    that order, and a `fleet up` that drains the queue: the tickets' ids."""
    tickets = []
    for title, command in diffs.items():
        [ticket] = fleet.submit("--repo", "shop", "--title", title, "--body", title, "--agent-cmd", command, *options)
        tickets.append(str(ticket["id"]))
    fleet.up()
    assert [fleet.json("show", t)["status"] for t in tickets] == ["needs_review"] * len(tickets)
    for ticket in tickets:
        fleet.run("merge", "enqueue", ticket)
    fleet.up()
    return tickets
