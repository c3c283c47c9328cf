"""What the queries raise: a row not found, a name taken, a database URL Fleet cannot use or a database it cannot
open (caught by the CLI without loading SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import get_close_matches


class NotFound(Exception):
    """No row with that id or name."""


class AlreadyExists(Exception):
    """A row with that unique name exists."""


class UnsupportedDatabase(ValueError):
    """A database URL that names neither SQLite nor PostgreSQL."""


class DatabaseUnreachable(Exception):
    """The database could not be opened or reached: a file that cannot be, a server that does not answer."""


def unknown_repo(name: str, known: Sequence[str]) -> NotFound:
    """The error for a repository name nobody registered: the closest registered name, and all of them."""
    close = get_close_matches(name, list(known), n=1)
    meant = f"did you mean {close[0]!r}? " if close else ""
    return NotFound(f"unknown repo {name!r} ({meant}known: {', '.join(known) or 'none registered'})")
