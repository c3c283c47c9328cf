"""The schema revisions this code knows, without SQLAlchemy or Alembic: what the reading commands check first."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0017"  # the newest revision in migrations/versions; a test keeps the two in step
VERSION_QUERY = "SELECT version_num FROM alembic_version"


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


def migration_module(filename: str) -> ModuleType:
    """An earlier migration file, loaded for its texts (trigger bodies) by a later one: the versions folder is not
    a package to import from."""
    path = MIGRATIONS / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
