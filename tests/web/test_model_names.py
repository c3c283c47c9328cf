"""A ticket's model is handed to its agent as `--model NAME`: a submitter, who may not give an agent arguments
(admins only), cannot give it one through the model's name, nor can a repository's `.fleet.toml` through its
`agent_model`. gemini's parser (yargs) reads `--model --yolo` as an empty model and `--yolo`, which turns off its
approval of commands (Fleet runs it with `--approval-mode auto_edit`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSpec
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from system.git import git
from tests.orchestrator.workers_stub import AGENTS
from tests.web.conftest import Web
from tests.web.test_submit_checks import make_web, post, stored
from workers.agents.scripted import write_sample_repo

OPTIONS = ("--yolo", "--approval-mode=yolo", "-y")


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Web]:
    """Workers on other hosts, which run every agent: gemini may be named here."""
    web = make_web(tmp_path, team=True)
    yield web
    web.app.state.fleet.db.dispose()


@pytest.mark.parametrize("option", OPTIONS)
def test_a_submitter_cannot_give_the_agent_an_option_as_its_model(team: Web, option: str) -> None:
    refused = post(team, "submitter", agents=["gemini"], model=option)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == f"model: is not a model name (one never starts with '-') (got {option!r})"
    assert stored(team) == 0
    accepted = post(team, "submitter", agents=["gemini"], model="gemini-2.5-pro")
    assert accepted.status_code == 201, accepted.text


def test_a_fleet_toml_cannot_give_every_agent_an_option_as_its_model(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_sample_repo(repo)
    (repo / ".fleet.toml").write_text('test_cmd = "true"\nagent_model = "--yolo"\n')
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    with pytest.raises(FleetError) as refused:
        register_repo(db, RepoSpec(name="r", path=str(repo)), AGENTS)
    assert str(refused.value) == (
        f".fleet.toml in {repo}: agent_model: is not a model name (one never starts with '-') (got '--yolo')"
    )
    db.dispose()
