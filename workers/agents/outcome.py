"""How an agent's run ended, when it says nothing itself: a crash (a non-zero exit and no change) is an error.

A CLI that exits non-zero without changing anything did not try and fail: it could not run (a bad flag, a missing
key, a crash). Recorded as an ordinary failure it would spend the ticket's remaining attempts on the same crash and
feed the next attempt feedback about tests it never touched; as an `error`, the run stops and says why.
"""

from __future__ import annotations

import re

EXPLAINS = re.compile(
    r"error|exception|fatal|panic|refused|denied|not found|no such|invalid|unknown|cannot|can't|failed|unauthori",
    re.IGNORECASE,
)
QUOTE_CHARS = 300


def explaining_line(output: str) -> str:
    """The last line of output that names a failure, else the last non-empty line ('' for no output)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    chosen = next((line for line in reversed(lines) if EXPLAINS.search(line)), lines[-1] if lines else "")
    return chosen if len(chosen) <= QUOTE_CHARS else chosen[: QUOTE_CHARS - 1] + "…"


def crash_reason(name: str, exit_code: int | None, output: str, changed: bool) -> str | None:
    """Why a run that exited non-zero and changed nothing is an error, quoting its output; None otherwise."""
    if exit_code in (0, None) or changed:
        return None
    line = explaining_line(output)
    return f"{name} exited with code {exit_code} without changing anything" + (f": {line}" if line else "")
