"""Schema upgrades with Alembic; `fleet` runs upgrade() on first use, so a new database needs no setup step.

Every command checks the schema, so the check is one query; Alembic itself is loaded only to upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0009"  # the newest revision in migrations/versions; a test keeps the two in step


def alembic_config(db: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_current(db: Database) -> bool:
    """True when the database is already at the newest revision."""
    return current_revision(db) == HEAD


class SchemaTooNew(Exception):
    """The database was migrated by a newer Fleet than this one: its code does not know the schema."""

    def __init__(self, found: str) -> None:
        super().__init__(
            f"the database schema is at revision {found}, newer than this Fleet's {HEAD}: upgrade Fleet on this host"
            " (rolling upgrades migrate the database first, then restart the workers with the new version)"
        )
        self.found = found


def known_revisions() -> set[str]:
    """The revision ids this code ships, read from the migration files' names."""
    return {path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def refuse_newer(found: str | None) -> None:
    """Raise SchemaTooNew when found is a revision this code does not ship (a later Fleet wrote it)."""
    if found is not None and found not in known_revisions():
        raise SchemaTooNew(found)


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already); refuse a newer one."""
    found = current_revision(db)
    refuse_newer(found)
    if found != HEAD:
        from alembic import command

        command.upgrade(alembic_config(db), "head")
