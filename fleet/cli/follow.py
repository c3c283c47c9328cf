"""`fleet logs --follow`: print a running agent's stored output as it grows, until the agent ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from fleet.cli.cells import for_terminal

FOLLOWED = (AttemptStatus.QUEUED.value, AttemptStatus.RUNNING.value)
ANCHOR_CHARS = 256
OMITTED = " bytes omitted ...]\n"  # system/process.py BoundedOutput's mark


def unseen(shown: str, now: str) -> str:
    """What of now comes after shown: the stored text grows at its end, but over its limit it loses its middle,
    and the final transcript adds the setup's notes in front; then the end of shown is looked for in now."""
    if now.startswith(shown):
        return now[len(shown) :]
    anchor = shown[-ANCHOR_CHARS:].rsplit(OMITTED, 1)[-1]  # what is before the marker moves
    at = now.rfind(anchor) if anchor else -1
    return now[at + len(anchor) :] if at >= 0 else now


def follow(db: Database, attempt_id: int, shown: str, every: float = 1.0, render: Callable[[str], str] = str) -> str:
    """Print what the attempt's transcript gains until its agent ends, whole lines through render (an event is
    rendered once it is whole); returns the attempt's status then."""
    pending = ""
    while True:
        with db.session() as s:
            attempt = queries.get_attempt(s, attempt_id)
            status, now = attempt.status, attempt.transcript
        done = status not in FOLLOWED
        text = pending + unseen(shown, now)
        complete, pending = (text, "") if done else _whole_lines(text)
        if complete:
            sys.stdout.write(for_terminal(render(complete)))
            sys.stdout.flush()
        shown = now
        if done:
            return status
        time.sleep(every)


def _whole_lines(text: str) -> tuple[str, str]:
    """(the whole lines of text, the unfinished last line)."""
    head, newline, rest = text.rpartition("\n")
    return (head + newline, rest) if newline else ("", text)
