"""What people read of a failure: one line, without SQL, parameters, tracebacks or driver noise.

Every reason Fleet stores for people to read (a verdict's reasons, an attempt's error, a ticket's status reason, an
event's message) goes through shown(): an exception's text may carry the statement that failed and its
parameters (SQLAlchemy appends `[SQL: ...]` and `[parameters: ...]`), which are nobody's business.
"""

from __future__ import annotations

import re

from system.credentials import shown_url

LIMIT = 2000
_TRACEBACK = "Traceback (most recent call last):"
_BRACKETED = re.compile(r"\[(?:SQL|parameters): .*?(?:\](?=\s*(?:\[(?:SQL|parameters): |\(Background|$))|$)", re.DOTALL)
_BACKGROUND = re.compile(r"\(Background on this error at:[^)]*\)")
_DRIVER = re.compile(r"\((?:psycopg|psycopg2|sqlite3|pymysql)[\w.]*\)\s*")
_SPACES = re.compile(r"\s+")
# PostgreSQL's own context lines quote the statement (LINE 1: SELECT ... and a caret) and the values (DETAIL).
_SERVER_LINES = re.compile(r"^\s*(?:LINE [0-9]+:|DETAIL:|CONTEXT:|QUERY:|HINT:|\^).*$", re.MULTILINE)


def shown(text: str) -> str:
    """text fit to show: SQL, parameters, tracebacks and URLs' passwords removed, on one line, at most LIMIT
    characters."""
    if _TRACEBACK in text:  # keep what came before it and the exception's own last line
        before, _, trace = text.partition(_TRACEBACK)
        text = before + " " + next((line for line in reversed(trace.splitlines()) if line.strip()), "")
    text = _BRACKETED.sub("", text)
    text = _SERVER_LINES.sub("", text)
    text = _BACKGROUND.sub("", _DRIVER.sub("", text))
    text = _SPACES.sub(" ", shown_url(text)).strip()
    return text if len(text) <= LIMIT else text[: LIMIT - 1] + "…"
