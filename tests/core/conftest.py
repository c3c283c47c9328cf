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
