"""Schema upgrades with Alembic; `fleet` runs upgrade() on first use, so a new database needs no setup step."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def is_current(db: Database) -> bool:
    """True when the database is already at the newest revision."""
    heads = set(ScriptDirectory.from_config(alembic_config(db)).get_heads())
    with db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    if not is_current(db):
        command.upgrade(alembic_config(db), "head")
