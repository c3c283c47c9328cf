"""The reading commands find the state where Settings does: Place reads the same variables the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.places import Place
from system.settings import Settings

ENVIRONMENTS = [
    {},
    {"FLEET_HOME": "relative/home"},
    {"FLEET_HOME": "/srv/fleet", "FLEET_DATABASE_URL": "postgresql+psycopg://u@h/db", "FLEET_BROKER_URL": "redis://r"},
    {"fleet_home": "/lower/case", "Fleet_Broker_Url": "redis://mixed"},  # pydantic-settings ignores the case
    {"XDG_DATA_HOME": "/xdg"},
    {"XDG_DATA_HOME": "not/absolute"},
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_place_reads_what_settings_reads(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("FLEET_HOME", "FLEET_DATABASE_URL", "FLEET_BROKER_URL", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings, place = Settings(), Place.from_env()
    assert place == settings.place
    assert (place.where(), place.db_url, place.embedded, place.broker_dir) == (
        settings.where(),
        settings.db_url,
        settings.embedded,
        settings.broker_dir,
    )
