"""What the queries raise: a row not found, a name taken (declared in db/errors.py)."""

from __future__ import annotations

from db.errors import AlreadyExists, NotFound

__all__ = ["AlreadyExists", "NotFound"]
