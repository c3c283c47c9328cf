"""A real git server and a scripted GitHub for the delivery tests, and a Fleet that holds their credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Fleet, make_test_fleet
from tests.forge.gitserver import GitServer
from tests.forge.scripted_forge import ScriptedForge


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    with GitServer(tmp_path / "served").serving() as server:
        yield server


@pytest.fixture
def forge() -> Iterator[ScriptedForge]:
    with ScriptedForge().serving() as scripted:
        yield scripted


@pytest.fixture
def fleet_with_forge(
    tmp_path: Path, git_server: GitServer, forge: ScriptedForge, monkeypatch: pytest.MonkeyPatch
) -> Fleet:
    """An embedded Fleet whose environment holds the git server's and the forge's tokens, as a worker's would; the
    test's own process too, for the passes it runs in-process (git reads the token from its environment)."""
    monkeypatch.setenv("FLEET_GIT_TOKEN", git_server.password)
    monkeypatch.setenv("FLEET_GIT_USER", git_server.user)
    return make_test_fleet(
        tmp_path,
        FLEET_GIT_TOKEN=git_server.password,
        FLEET_GIT_USER=git_server.user,
        FLEET_GITHUB_TOKEN=forge.token,
        FLEET_WEBHOOK_SECRET="hook-secret-0123456789",
        FLEET_PUBLIC_URL="http://fleet.example",
    )


def served_sample(fleet: Fleet, server: GitServer, name: str = "shop") -> str:
    """The demo repository (three bugs, on main) served by the git server; returns its URL."""
    from workers.agents.scripted import write_sample_repo

    source = fleet.tmp / f"{name}-source"
    write_sample_repo(source)
    return server.bare(name, source)
