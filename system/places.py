"""Where a Fleet keeps its state, read from the environment without pydantic (the reading commands' fast start).

`Settings` (system/settings.py) reads the same three variables and answers `where()`, `db_url` and the folders
through `Place`, so the two cannot drift; a test compares them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_BROKER = "embedded"


def default_home() -> Path:
    """The per-user data folder, `$XDG_DATA_HOME/fleet` (else `~/.local/share/fleet`): never the current folder.

    The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "fleet"


@dataclass(frozen=True)
class Place:
    """FLEET_HOME, FLEET_DATABASE_URL and FLEET_BROKER_URL, and what follows from them."""

    home: Path
    database_url: str = ""
    broker_url: str = EMBEDDED_BROKER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Place:
        """The three variables as pydantic-settings reads them: FLEET_ prefix, names in any case."""
        found = {key.lower(): value for key, value in (os.environ if environ is None else environ).items()}
        home = found.get("fleet_home")
        return cls(
            home=default_home() if home is None else Path(home),
            database_url=found.get("fleet_database_url", ""),
            broker_url=found.get("fleet_broker_url", EMBEDDED_BROKER),
        )

    def where(self) -> str:
        """Where this Fleet keeps its state, and why there: for the commands that found nothing."""
        if self.database_url:
            return "the database of FLEET_DATABASE_URL"
        return self.folder()

    def folder(self) -> str:
        """The home folder, and why that one: with FLEET_DATABASE_URL it still holds this host's files."""
        chosen = "FLEET_HOME" if os.environ.get("FLEET_HOME") else "the default; FLEET_HOME overrides"
        return f"{resolved(self.home)} ({chosen})"

    @property
    def db_url(self) -> str:
        """The database URL: FLEET_DATABASE_URL, or SQLite inside FLEET_HOME."""
        return self.database_url or f"sqlite:///{resolved(self.home) / 'fleet.db'}"

    @property
    def embedded(self) -> bool:
        """True when the broker is the serverless one under FLEET_HOME."""
        return self.broker_url == EMBEDDED_BROKER

    @property
    def broker_dir(self) -> Path:
        return resolved(self.home) / "broker"


def resolved(path: Path) -> Path:
    """path.resolve(), remembered: each attempt asks for its folders several times, and each resolve() is a system
    call per part of the path (a relative path is taken from the current folder, as resolve() takes it). A link
    on the way that is pointed elsewhere while a worker runs is seen by the next process, not by that one."""
    return _resolved_absolute(path if path.is_absolute() else Path.cwd() / path)


@functools.lru_cache(maxsize=16)
def _resolved_absolute(path: Path) -> Path:
    return path.resolve()
