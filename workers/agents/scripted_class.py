"""Scripted agent classes, for tests of the classes an admin allow-lists (FLEET_AGENT_CLASSES).

Each keeps the class contract (built with AgentOptions, run(task) -> AgentResult) and runs, as every listed
class does, in a process of its own inside the attempt's sandbox (workers/agents/hosted.py). Importing this
module appends the importing process's pid to the file named by $FLEET_SCRIPTED_CLASS_MARKER when that is
set, so a test can tell which processes imported it.

    FixAdd       fixes add() in the sample repository (write_sample_repo) and reports its usage (TOKENS_IN...);
                 the transcript names its pid, its __main__ module and what runs as pid 1 where it runs.
    Exits        raises SystemExit(3) from run().
    Interrupted  raises KeyboardInterrupt from run().
    Hangs        never returns (for time limits).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from workers.agents.base import AgentOptions
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.scripted import FIX_ADD, apply_edits

MARKER_ENV = "FLEET_SCRIPTED_CLASS_MARKER"
TOKENS_IN, TOKENS_OUT, COST_USD = 1200, 300, 0.0125

if os.environ.get(MARKER_ENV):
    with open(os.environ[MARKER_ENV], "a", encoding="utf-8") as _marker:
        _marker.write(f"{os.getpid()}\n")


def where() -> str:
    """This process's pid, its __main__ module and its pid 1 (bwrap inside a sandbox's own PID namespace)."""
    main = getattr(sys.modules["__main__"].__spec__, "name", "?")
    try:
        init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        init = "?"
    return f"pid {os.getpid()}, __main__ {main}, pid 1 {Path(init).name}"


class FixAdd:
    """Fixes add() and reports its usage: TOKENS_IN, TOKENS_OUT and COST_USD."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        changed = apply_edits(FIX_ADD, task.worktree)
        transcript = f"scripted class FixAdd: {where()}; {changed} edit(s); HOME {os.environ.get('HOME')}\n"
        return AgentResult(0, transcript, 0.0, tokens_in=TOKENS_IN, tokens_out=TOKENS_OUT, cost_usd=COST_USD)


class Exits:
    """Calls sys.exit(3), which raises SystemExit."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        sys.exit(3)


class Interrupted:
    """Raises KeyboardInterrupt, as code that traps Ctrl-C badly might."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        raise KeyboardInterrupt


class Hangs:
    """Sleeps until it is killed."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        while True:
            time.sleep(60)
