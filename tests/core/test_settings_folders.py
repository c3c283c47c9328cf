"""Settings' folders: FLEET_HOME resolved (symbolic links followed, a relative one from the current folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.settings import Settings


def test_a_relative_home_is_taken_from_the_folder_each_command_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    settings = Settings(home=Path("fleet-home"))
    monkeypatch.chdir(one)
    assert settings.attempts_dir == one.resolve() / "fleet-home" / "attempts"
    monkeypatch.chdir(two)
    assert settings.attempts_dir == two.resolve() / "fleet-home" / "attempts"
    assert settings.worktrees_dir == two.resolve() / "fleet-home" / "worktrees"


def test_a_home_behind_a_link_is_the_folder_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    settings = Settings(home=tmp_path / "link")
    assert settings.mirrors_dir == real.resolve() / "mirrors"
    assert settings.env_cache_dir == real.resolve() / "envs"
