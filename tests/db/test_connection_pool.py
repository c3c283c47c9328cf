"""A worker's PostgreSQL connections: opened once and kept, never more than the pool's size at once."""

from __future__ import annotations

import threading
from contextlib import ExitStack

from sqlalchemy import Connection, text

from db.engine import POSTGRES_POOL_SIZE, Database


def _hold_all(db: Database, stack: ExitStack) -> list[Connection]:
    return [stack.enter_context(db.engine.connect()) for _ in range(POSTGRES_POOL_SIZE)]


def _server_pids(connections: list[Connection]) -> set[int]:
    return {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in connections}


def test_a_burst_of_slots_reuses_the_connections_the_last_burst_opened(pg_database: str) -> None:
    db = Database(pg_database)
    try:
        with ExitStack() as stack:
            first = _server_pids(_hold_all(db, stack))
        with ExitStack() as stack:
            second = _server_pids(_hold_all(db, stack))
    finally:
        db.dispose()
    assert len(first) == POSTGRES_POOL_SIZE
    assert second == first  # no server process closed and started again between two waves


def test_a_slot_past_the_pools_size_waits_for_a_connection_to_come_back(pg_database: str) -> None:
    db = Database(pg_database)
    got: list[int] = []

    def one_more() -> None:
        with db.engine.connect() as conn:
            got.append(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    try:
        with ExitStack() as stack:
            held = _hold_all(db, stack)
            pids = _server_pids(held)
            waiting = threading.Thread(target=one_more)
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive() and not got  # the server is not asked for a twenty-first connection
            held[0].close()
            waiting.join(10)
        assert got and got[0] in pids
    finally:
        db.dispose()
