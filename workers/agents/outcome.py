"""How an agent's run ended, when it says nothing itself: a crash (a non-zero exit and no change) is an error.

A CLI that exits non-zero without changing anything did not try and fail: it could not run (a bad flag, a missing
key, a crash). Recorded as an ordinary failure it would spend the ticket's remaining attempts on the same crash and
feed the next attempt feedback about tests it never touched; as an `error`, the run stops and says why.
"""

from __future__ import annotations

import re

STRONG = re.compile(
    r"\berror\b|exception|fatal|panic|unknown (?:argument|option)|unexpected argument|unrecognized|no such option",
    re.IGNORECASE,
)
WEAK = re.compile(r"refused|denied|not found|no such|invalid|cannot|can't|failed|unauthori", re.IGNORECASE)
HELP_LINE = re.compile(r"^\s*-|\[(?:choices|default|boolean|string|number|array)\b")  # an option in a usage text
USAGE = re.compile(r"^\s*(?:usage|options|positionals|commands):", re.IGNORECASE | re.MULTILINE)
QUOTE_CHARS = 300


def explaining_line(output: str) -> str:
    """The last line that names an error, else a usage text's summary, else the last line naming a failure, else
    the last non-empty line ('' for no output)."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not HELP_LINE.search(line)]
    chosen = next((line for line in reversed(lines) if STRONG.search(line)), "")
    if not chosen and USAGE.search(output):
        chosen = "it printed its usage instead of running (an argument it does not take?)"
    chosen = chosen or next((line for line in reversed(lines) if WEAK.search(line)), lines[-1] if lines else "")
    return chosen if len(chosen) <= QUOTE_CHARS else chosen[: QUOTE_CHARS - 1] + "…"


def crash_reason(name: str, exit_code: int | None, output: str, changed: bool) -> str | None:
    """Why a run that exited non-zero and changed nothing is an error, quoting its output; None otherwise."""
    if exit_code in (0, None) or changed:
        return None
    line = explaining_line(output)
    return f"{name} exited with code {exit_code} without changing anything" + (f": {line}" if line else "")
