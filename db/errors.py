"""What the queries raise: a row not found, a name taken (caught by the CLI without loading SQLAlchemy)."""

from __future__ import annotations


class NotFound(Exception):
    """No row with that id or name."""


class AlreadyExists(Exception):
    """A row with that unique name exists."""
