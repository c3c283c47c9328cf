"""Fleet's own credentials reach neither an agent nor a test run, even where a repository's `.fleet.toml` (written by
whoever commits to it) or an admin names them among the variables to pass."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from verification.runner import allowed_env
from workers.agents import AgentOptions, agent_env
from workers.agents.contracts import AgentTask

SECRETS = {
    "FLEET_DATABASE_URL": "postgresql://fleet:pgsecret0123@postgres:5432/fleet",
    "FLEET_BROKER_URL": "redis://:redissecret0123@redis:6379/0",
    "FLEET_GIT_TOKEN": "ghp_gitsecret0123",
}


def test_the_database_and_broker_urls_and_tokens_are_never_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROJECT_SETTING", "kept")
    named = (*SECRETS, "PROJECT_SETTING")
    task = AgentTask(tmp_path, tmp_path / "prompt.md", 7, 1, 5, threading.Event())
    seen = {**agent_env(task, AgentOptions(env_passthrough=named)), **allowed_env(os.environ, named)}
    assert seen["PROJECT_SETTING"] == "kept"
    assert [name for name in SECRETS if name in seen] == []
    assert not any(value in str(seen) for value in SECRETS.values())
