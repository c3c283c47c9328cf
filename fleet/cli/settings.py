"""The settings of every command but the reading ones: a bad FLEET_ variable is one line, not a traceback."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_settings import SettingsError

from db.specs import explain
from orchestrator.errors import FleetError
from system.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or FleetError naming the variable: `FLEET_LEASE_SECONDS: must be a number`."""
    try:
        return Settings()
    except ValidationError as exc:
        field, _, problem = explain(exc).partition(": ")
        raise FleetError(f"FLEET_{field.upper()}: {problem}" if problem else field) from None
    except SettingsError as exc:  # pydantic-settings decodes a mapping's JSON itself, before any validator
        named = re.search(r'field "(\w+)"', str(exc))
        field = f"FLEET_{named[1].upper()}" if named else "a FLEET_ variable"
        raise FleetError(f'{field}: not valid JSON (a mapping is written as {{"name": 2}})') from None
