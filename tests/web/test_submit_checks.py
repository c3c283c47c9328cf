"""The API and the tickets page refuse a ticket whose agent can only fail, with `fleet submit`'s one line; with a
team's workers (on other hosts) only the shell agent without a command is refused, as the command line does."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from db import queries
from db.engine import Database
from system.settings import Settings
from tests.web.conftest import Web, add_sample_repo, make_fleet, make_tokens, settings_for
from tests.web.test_pages import csrf_of, login

SHELL_NEEDS_A_COMMAND = "the shell agent needs --agent-cmd (the command it runs, e.g. --agent-cmd ./fix.sh)"


class TeamWorkers:
    """Workers on other hosts: they run every agent, and nothing here reaches them."""

    def kick(self, db: Database, settings: Settings) -> int:
        return 0

    def queue_depths(self) -> dict[str, int | None]:
        return {}

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return None


def make_web(tmp_path: Path, team: bool) -> Web:
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path)
    settings = settings_for(fleet)
    if team:
        settings = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    app = create_app(settings, (lambda _: TeamWorkers()) if team else celery_dispatcher)
    add_sample_repo(fleet, app)
    return Web(fleet=fleet, settings=settings, app=app, tokens=make_tokens(app), tickets={})


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Web]:
    """The embedded workers, which run on this machine: commands are looked for here."""
    web = make_web(tmp_path, team=False)
    yield web
    web.app.state.fleet.db.dispose()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Web]:
    web = make_web(tmp_path, team=True)
    yield web
    web.app.state.fleet.db.dispose()


def post(web: Web, role: str, **fields: Any) -> Any:
    return web.client().post("/api/tickets", json={"repo": "calc", "title": "t"} | fields, headers=web.headers(role))


def stored(web: Web) -> int:
    with web.app.state.fleet.db.session() as s:
        return len(queries.list_tickets(s, None, None, 1000))


def test_the_api_refuses_what_submit_refuses_with_its_line(local: Web) -> None:
    home = local.settings.home.resolve()
    (home / "not-executable.sh").write_text("#!/bin/sh\n")
    refused = {
        SHELL_NEEDS_A_COMMAND: post(local, "submitter"),
        "unknown agent 'nobody'": post(local, "submitter", agents=["nobody"]),
        f"agent command not found: ./missing.sh (looked in {home})": post(local, "admin", agent_cmd="./missing.sh"),
        "agent command not found: no-such-agent-xyz (looked on PATH)": post(
            local, "admin", agent_cmd="no-such-agent-xyz"
        ),
        f"agent command is not executable: {home / 'not-executable.sh'}": post(
            local, "admin", agent_cmd="./not-executable.sh"
        ),
    }
    for line, answer in refused.items():
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith(line) and "\n" not in detail
    assert stored(local) == 0
    assert post(local, "admin", agent_cmd="true").status_code == 201


def test_the_tickets_page_shows_the_same_line(local: Web) -> None:
    for role, fields, line in (
        ("submitter", {}, SHELL_NEEDS_A_COMMAND),
        ("admin", {"agent_cmd": "no-such-agent-xyz"}, "agent command not found: no-such-agent-xyz (looked on PATH)"),
    ):
        client = login(local, role)
        data = {"csrf": csrf_of(client, "/tickets"), "repo": "calc", "title": "kept title"} | fields
        answer = client.post("/tickets", data=data)
        assert answer.status_code == 422
        assert f'<p class="error" role="alert" id="ticket-error">{html.escape(line)}' in answer.text
        assert "kept title" in answer.text
    assert stored(local) == 0


def test_with_a_teams_workers_only_the_shell_agent_without_a_command_is_refused(team: Web) -> None:
    refused = post(team, "submitter")
    assert refused.status_code == 422 and refused.json()["detail"] == SHELL_NEEDS_A_COMMAND
    # The command may exist only on the workers' hosts.
    accepted = post(team, "admin", agent_cmd="/opt/agents/fix.sh")
    assert accepted.status_code == 201, accepted.text
    assert stored(team) == 1
