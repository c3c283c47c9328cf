"""Schema upgrades with Alembic; `fleet` runs upgrade() on first use, so a new database needs no setup step.

Every command checks the schema, so the check is one query; Alembic itself is loaded only to upgrade. The
revisions themselves are in db/revisions.py, which the reading commands check without SQLAlchemy (db/reads.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.exc import DatabaseError

from db.connections import unreachable
from db.engine import Database
from db.revisions import HEAD, MIGRATIONS, VERSION_QUERY, SchemaTooNew, refuse_newer

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "SchemaTooNew", "alembic_config", "current_revision", "is_current", "upgrade"]


def alembic_config(db: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def current_revision(db: Database) -> str | None:
    """The schema's revision, None without one; DatabaseUnreachable when the database cannot be opened."""
    try:
        with db.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text(VERSION_QUERY)).scalar()
    except DatabaseError as exc:  # a server that does not answer, a file that is not a database
        raise unreachable(db.url, exc) from None


def is_current(db: Database) -> bool:
    """True when the database is already at the newest revision."""
    return current_revision(db) == HEAD


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already); refuse a newer one."""
    found = current_revision(db)
    refuse_newer(found)
    if found != HEAD:
        from alembic import command

        command.upgrade(alembic_config(db), "head")
