"""Scratch PostgreSQL databases for the benchmarks: made on the local server, dropped when the benchmark exits.

A history of 100,000 tickets is hundreds of megabytes: a benchmark that left its databases behind would fill the
server of whoever runs it.
"""

from __future__ import annotations

import atexit
import uuid
from typing import Any

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def scratch_database(prefix: str) -> str:
    """The URL of a new, empty database, dropped (with any session still on it) when this process exits."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    atexit.register(drop_database, admin, name)
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(admin: Any, name: str) -> None:
    from sqlalchemy import text

    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
