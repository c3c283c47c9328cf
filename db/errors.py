"""What the queries raise: a row not found, a name taken, a database URL Fleet cannot use or a database it cannot
open (caught by the CLI without loading SQLAlchemy)."""

from __future__ import annotations


class NotFound(Exception):
    """No row with that id or name."""


class AlreadyExists(Exception):
    """A row with that unique name exists."""


class UnsupportedDatabase(ValueError):
    """A database URL that names neither SQLite nor PostgreSQL."""


class DatabaseUnreachable(Exception):
    """The database could not be opened or reached: a file that cannot be, a server that does not answer."""
