"""Engines and sessions: SQLite gets WAL, a busy timeout and write-locking transactions; PostgreSQL works as is."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, create_engine, event, make_url, or_
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from db.connections import POSTGRES_OPTIONS, SQLITE_BUSY_MS, postgres_address, sqlite_path, unreachable


def _sqlite_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the begin hook below open every transaction
    dbapi_conn.execute("PRAGMA journal_mode=WAL")
    dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


# At most 20 connections per process: several worker processes of a hundred slots each share one server's
# connection limit (100 by default); a slot holds a connection for milliseconds, so it waits rarely. Each is kept
# once opened: a pool of 5 with 15 more for bursts closed a burst's extra connections as they came back, and the
# next wave of slots opened them again, each a new server process with cold caches (0.3 to 2.8 ms of the server's
# CPU per ticket in the fleet benchmark's team mode, the most with several worker processes).
POSTGRES_POOL_SIZE = 20
READ_ONLY = "fleet_read_only"  # the execution option Database.reading() sets on its connection


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
    # fails with "database is locked" instead of waiting when another writer got in between. A transaction that
    # only reads (Database.reading) is deferred: under WAL it reads a snapshot and waits for no writer.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for url; SQLite folders are created and tuned for many concurrent writers."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise unreachable(url, exc) from None
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    address = make_url(postgres_address(url)).set(drivername="postgresql+psycopg2")
    options = {} if "options" in address.query else {"options": POSTGRES_OPTIONS}
    return create_engine(
        address, pool_pre_ping=True, pool_size=POSTGRES_POOL_SIZE, max_overflow=0, connect_args=options
    )


class Database:
    """One engine plus a session factory; `with db.session() as s:` commits on success, rolls back on error.

    On SQLite every transaction takes the write lock (BEGIN IMMEDIATE), so the threads of one process take turns
    on a lock of their own first: a waiting thread wakes the moment the lock is free, where SQLite's busy handler
    would poll in sleeps of up to 100 ms. Other processes (a CLI, the web) still wait through the busy timeout."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._turns = threading.Lock() if url.startswith("sqlite") else None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._turn(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for statements that only read, in one transaction: on SQLite it takes neither the write
        lock nor this process's turn, so a poll (an idle check five times a second, the progress line, the cancel
        relay) never waits for the writers, nor they for it. Reads only: a write would take SQLite's lock in the
        middle of the transaction, outside the turns."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if self._turns is None:
            yield
            return
        if not self._turns.acquire(timeout=SQLITE_BUSY_MS / 1000):
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
        try:
            yield
        finally:
            self._turns.release()

    def dispose(self) -> None:
        self.engine.dispose()


def rows(s: Session) -> Connection:
    """The session's connection, for a statement about rows rather than objects: what the session holds is written
    first (as the ORM's autoflush would), and no loaded object is kept in step with the statement. On the hot path
    this skips the ORM's per-statement work (compiling for the ORM, keeping loaded objects in step)."""
    s.flush()
    return s.connection()


def one_of(column: ColumnElement[Any] | InstrumentedAttribute[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (values)` for a statement built once, as equalities compiled with it: SQLAlchemy expands an IN
    list of values anew at every execution, which cost a small UPDATE more than the rest of its Python did."""
    return or_(*(column == value for value in values))


def transient(exc: BaseException) -> bool:
    """True for a database that could not be reached or dropped the connection: worth trying again, never a verdict.

    OperationalError covers a refused connection, a terminated backend (AdminShutdown) and SQLite's "database is
    locked"; InterfaceError a connection closed under the driver; PoolTimeout every connection of the process
    busy for longer than the pool waits.
    """
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """A database that is away is one warning line (the caller tries again when it answers); anything else is
    logged with its traceback."""
    if transient(exc):
        logger.warning("%s: database unreachable (%s); retrying", what, type(exc).__name__)
    else:
        logger.error("%s failed", what, exc_info=exc)
