"""In headless Chromium: a reviewer on a ticket's page reads the agent's output while the agent still runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from db.specs import TicketSpec
from tests.web.conftest import Server, add_sample_repo, make_fleet, queue, settings_for
from tests.web.test_browser import browser, shot
from tests.web.test_browser_pages import logged_in
from workers.agents.scripted import scripted_command

__all__ = ["browser"]  # the fixture, shared with the other browser tests
# The agent prints the gate's name: an escape sequence (red text in a terminal) and a tag, both hostile.
GATE = "gate\x1b[31m<i>x"
SHOWN = "waiting for gate<i>x"


@pytest.mark.slow
def test_the_ticket_page_shows_the_running_agents_output_live(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    fleet = make_fleet(tmp_path)
    fleet.env |= {"FLEET_AGENT_SANDBOX": "false", "FLEET_TRANSCRIPT_FLUSH_SECONDS": "0.2"}  # a gate outside
    app = create_app(settings_for(fleet), celery_dispatcher, sse_seconds=60, poll_seconds=0.2)
    add_sample_repo(fleet, app)
    _, token = new_token(app.state.fleet.db, Role.REVIEWER, "reviewer1", "test")
    gate = tmp_path / GATE
    agent = shlex.join(scripted_command("wait-for", str(gate)))
    [ticket] = queue(
        app,
        TicketSpec(repo="calc", title="add() subtracts", body="tests/test_calc.py::test_add fails", agent_cmd=agent),
    )

    with Server(app) as server:
        page = logged_in(browser, server.url, token)
        page.goto(f"/tickets/{ticket}")
        page.evaluate("window.__sameDocument = true")  # a reload would wipe it
        workers = fleet.popen("up", "--until-idle", "--concurrency", "1")
        try:
            live = page.locator("[data-transcript-of]")
            expect(live).to_contain_text(SHOWN, timeout=60_000)
            assert live.locator("i").count() == 0  # the agent's tag is text, not markup
            assert "\x1b" not in live.inner_text()
            expect(page.locator("#ticket-status")).to_have_text("running")
            shot(page, "7-live-transcript")
            gate.touch()
            expect(page.locator("#ticket-status")).to_have_text("needs_review", timeout=60_000)
        finally:
            output, _ = workers.communicate(timeout=60)
        assert workers.returncode == 0, output
        assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
        final = page.locator("details.transcript[open] pre")  # the box the reader had open stays open
        expect(final).to_contain_text("edited calc.py")
        expect(final).to_contain_text(SHOWN)
        assert page.locator("[data-transcript-of]").count() == 0  # no agent runs any more
    app.state.fleet.db.dispose()
