"""A database URL names a database; Fleet picks the driver: a PostgreSQL URL that names another driver (as
`postgresql+psycopg://` did before Fleet moved to psycopg2) still connects, and a URL of any other database is one
line from every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from db.engine import Database
from db.reads import reading
from tests.conftest import make_test_fleet


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgres"])
def test_a_postgresql_url_connects_through_psycopg2_whatever_driver_it_names(pg_database: str, scheme: str) -> None:
    url = f"{scheme}://{pg_database.split('://', 1)[1]}"
    db = Database(url)
    try:
        assert db.engine.dialect.driver == "psycopg2"
        with db.session() as s:
            assert s.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "30s"
    finally:
        db.dispose()
    with reading(url) as reader:
        assert reader is not None
        assert reader.rows("SELECT current_setting('idle_in_transaction_session_timeout') AS limit_") == [
            {"limit_": "30s"}
        ]


@pytest.mark.parametrize("command", [["tickets"], ["status"], ["show", "1"], ["repo", "list"]])
def test_a_url_of_another_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    fleet = make_test_fleet(tmp_path, database_url="mysql://fleet@127.0.0.1/fleet")
    result = fleet.run(*command, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: FLEET_DATABASE_URL names mysql://: Fleet keeps its state in SQLite (sqlite:///PATH) or PostgreSQL "
        "(postgresql://USER@HOST/DATABASE)\n"
    )
