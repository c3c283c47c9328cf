"""POST /api/tickets and /api/repos take only built-in agents and the classes an admin listed (FLEET_AGENT_CLASSES)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from db import queries
from tests.web.conftest import ROLES, Web, add_sample_repo, make_fleet, make_tokens, settings_for

LISTED = "workers.agents.scripted_class:FixAdd"
REFUSED = ["unittest.__main__:TestProgram", "os:system", "os.system", "subprocess:Popen"]


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[Web]:
    """A Fleet whose admin listed one class; nothing runs, the answers to submissions are the point."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path)
    settings = settings_for(fleet).model_copy(update={"agent_classes": [LISTED]})
    app = create_app(settings, celery_dispatcher)
    add_sample_repo(fleet, app)
    yield Web(fleet=fleet, settings=settings, app=app, tokens=make_tokens(app), tickets={})
    app.state.fleet.db.dispose()


def submit(web: Web, role: str, agent: str) -> Any:
    body = {"repo": "calc", "title": "x", "agents": [agent]}
    return web.client().post("/api/tickets", json=body, headers=web.headers(role))


@pytest.mark.parametrize("agent", REFUSED)
def test_no_role_may_name_a_class_when_none_is_listed(web: Web, agent: str) -> None:
    with web.app.state.fleet.db.session() as s:
        before = len(queries.list_tickets(s, None, None, 1000))
    for role in ("submitter", "admin"):
        answer = submit(web, role, agent)
        assert answer.status_code == 422, answer.text  # as `fleet submit` refuses it: before anything is stored
        detail = answer.json()["detail"]
        assert f"agent {agent!r} is not allowed" in detail and "FLEET_AGENT_CLASSES" in detail
        assert "(listed: none)" in detail and "\n" not in detail
    with web.app.state.fleet.db.session() as s:
        assert len(queries.list_tickets(s, None, None, 1000)) == before


def test_a_listed_class_is_accepted_and_nothing_else(listed: Web) -> None:
    for role in ROLES[1:]:
        answer = submit(listed, role, LISTED)
        assert answer.status_code == 201, answer.text
        assert answer.json()["agent"] == LISTED
        assert submit(listed, role, "workers.agents.scripted_class.FixAdd").status_code == 201  # the other spelling
        for agent in [*REFUSED, "workers.agents.scripted_class:Exits"]:
            refused = submit(listed, role, agent)
            assert refused.status_code == 422, refused.text
            assert "FLEET_AGENT_CLASSES" in refused.json()["detail"] and LISTED in refused.json()["detail"]
    assert submit(listed, "viewer", LISTED).status_code == 403


def test_a_repository_default_agent_is_checked_too(listed: Web) -> None:
    client, admin = listed.client(), listed.headers("admin")
    repo = {"path": str(listed.fleet.tmp / "calc"), "test_cmd": "true"}
    refused = client.post("/api/repos", json=repo | {"name": "other", "agent": "os:system"}, headers=admin)
    assert refused.status_code == 400 and "FLEET_AGENT_CLASSES" in refused.json()["detail"]
    accepted = client.post("/api/repos", json=repo | {"name": "mine", "agent": LISTED}, headers=admin)
    assert accepted.status_code == 201 and accepted.json()["default_agent"] == LISTED
