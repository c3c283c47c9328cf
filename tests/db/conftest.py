"""What the database tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from db.engine import Database
from db.migrate import upgrade


@pytest.fixture
def migrated(database_url: str) -> Iterator[Database]:
    """A database at the schema's head, on SQLite and on PostgreSQL (database_url), disposed of afterwards."""
    database = Database(database_url)
    upgrade(database)
    yield database
    database.dispose()
