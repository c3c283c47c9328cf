"""How Fleet connects to its database, whether through SQLAlchemy (db/engine.py) or the DB-API alone (db/reads.py):
the driver and limits both kinds of connection get, and the file a SQLite URL names. Imports nothing heavy."""

from __future__ import annotations

from pathlib import Path

from db.errors import DatabaseUnreachable, UnsupportedDatabase

SQLITE_BUSY_MS = 30_000
# A worker cut off by a network partition in the middle of a transaction keeps its row locks until the server ends
# its session, which TCP keepalives do only after hours: the attempt it held could not be taken over. Fleet's
# transactions are short (on SQLite each holds the write lock), so a session idle for 30 s inside one is a client
# that is gone. A URL that sets `options` itself keeps them.
POSTGRES_IDLE_TRANSACTION_MS = 30_000

POSTGRES_OPTIONS = f"-c idle_in_transaction_session_timeout={POSTGRES_IDLE_TRANSACTION_MS}"


def postgres_address(url: str) -> str:
    """libpq's URL for a PostgreSQL URL, whatever driver it names (`postgresql+psycopg://` as much as
    `postgresql://`): Fleet picks the driver, psycopg2, whose import costs a reading command a tenth of psycopg 3's."""
    scheme, rest = url.split("://", 1)
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise UnsupportedDatabase(
            f"FLEET_DATABASE_URL names {scheme}://: Fleet keeps its state in SQLite (sqlite:///PATH) or PostgreSQL "
            "(postgresql://USER@HOST/DATABASE)"
        )
    return f"postgresql://{rest}"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL; None for an in-memory database."""
    path = url.split("///", 1)[-1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def unreachable(url: str, cause: BaseException) -> DatabaseUnreachable:
    """The error of a database that cannot be opened, in one line: which one (never a password), and why."""
    where = (
        f"the SQLite database {sqlite_path(url) or url}"
        if url.startswith("sqlite")
        else "the database of FLEET_DATABASE_URL"
    )
    lines = [line.strip() for line in str(getattr(cause, "orig", None) or cause).splitlines() if line.strip()]
    return DatabaseUnreachable(f"cannot open {where}: {lines[0] if lines else type(cause).__name__}")
