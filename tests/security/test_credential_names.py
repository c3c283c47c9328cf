"""Fleet's own credentials reach neither an agent nor a test run, even where a repository's `.fleet.toml` (written by
whoever commits to it) or an admin names them among the variables to pass."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSpec
from db.spectypes import granted_names
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from system.git import git
from tests.orchestrator.workers_stub import AGENTS
from verification.runner import allowed_env
from workers.agents import AgentOptions, agent_env
from workers.agents.contracts import AgentTask
from workers.agents.scripted import write_sample_repo
from workers.gateway.attempt import KEY_VARIABLES

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


# What a worker's environment holds besides Fleet's own: the keys the gateway holds for the agents, a forge's and a
# cloud's, and passwords by other shapes.
HOST_SECRETS = (
    *(name for names in KEY_VARIABLES.values() for name in names),
    "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASS", "STRIPE_SK", "SENTRY_DSN", "SIGNING_KEY",
)  # fmt: skip


def _registered(tmp_path: Path, fleet_toml: str, **options: object) -> dict[str, object]:
    repo = tmp_path / "repo"
    write_sample_repo(repo)
    (repo / ".fleet.toml").write_text(fleet_toml)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    return register_repo(db, RepoSpec.model_validate({"name": "r", "path": str(repo), **options}), AGENTS)


@pytest.mark.parametrize("setting", ["test_env", "agent_env"])
@pytest.mark.parametrize("name", HOST_SECRETS)
def test_a_repositorys_fleet_toml_cannot_pass_a_host_secret_on(tmp_path: Path, setting: str, name: str) -> None:
    """Whoever commits to the repository writes its `.fleet.toml`: naming a secret there would hand the worker's
    model provider key, cloud key or token to code under test (or to the agent). Refused, by name."""
    with pytest.raises(FleetError) as refused:
        _registered(tmp_path, f'test_cmd = "true"\n{setting} = ["PROJECT_SETTING", "{name}"]\n')
    assert f"{setting} names {name}" in str(refused.value) and "\n" not in str(refused.value)


def test_the_operator_passes_a_secret_on_by_name_and_a_fleet_toml_its_other_variables(tmp_path: Path) -> None:
    repo = _registered(tmp_path, 'test_cmd = "true"\ntest_env = ["PROJECT_SETTING"]\n')
    assert repo["settings"] == {"test_env": ["PROJECT_SETTING"]}
    chosen = _registered(
        tmp_path / "op", 'test_cmd = "true"\ntest_env = ["OPENAI_API_KEY"]\n', test_env=["OPENAI_API_KEY"]
    )
    # the operator's option, not the file, names it: kept as the operator's
    assert chosen["settings"] == {"test_env": ["OPENAI_API_KEY"], "granted": {"test_env": ["OPENAI_API_KEY"]}}
    env = {"OPENAI_API_KEY": "sk-operator-chose-this", "ANTHROPIC_API_KEY": "sk-never"}
    granted = granted_names(chosen["settings"])["test_env"]
    assert allowed_env(env, ["OPENAI_API_KEY"], granted) == {"OPENAI_API_KEY": "sk-operator-chose-this"}
