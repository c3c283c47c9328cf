"""In headless Chromium: a submitter queues a ticket from the tickets page, and the API's docs work offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Server, make_fleet, settings_for
from tests.web.test_browser import browser, shot

__all__ = ["browser"]  # the fixture, shared with the other browser tests
AGENT = "workers.agents.scripted_class:FixAdd"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token
    from tests.web.conftest import add_sample_repo

    fleet = make_fleet(tmp_path)
    app = create_app(settings_for(fleet).model_copy(update={"agent_classes": [AGENT]}), celery_dispatcher)
    add_sample_repo(fleet, app)
    db = app.state.fleet.db
    tokens = {role: new_token(db, Role(role), f"{role}1", "test")[1] for role in ("submitter", "viewer")}
    with Server(app) as server:
        yield server, tokens
    db.dispose()


def logged_in(browser: Any, url: str, token: str) -> Any:
    page = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    return page


def test_a_submitter_queues_a_ticket_from_the_tickets_page(browser: Any, served: tuple[Server, dict[str, str]]) -> None:
    server, tokens = served
    page = logged_in(browser, server.url, tokens["submitter"])
    page.goto("/tickets")
    page.click("#new-ticket summary")
    page.fill("#ticket-title", "")
    page.fill("#ticket-body", "tests/test_calc.py::test_add fails")
    page.fill("#ticket-agent", AGENT)
    page.click("#ticket-submit")
    assert page.locator("#ticket-error").inner_text().startswith("title: must not be empty")
    assert page.locator("#ticket-body").input_value() == "tests/test_calc.py::test_add fails"  # nothing retyped
    shot(page, "tickets-form-error")
    page.fill("#ticket-title", "add() subtracts")
    page.click("#ticket-submit")
    page.wait_for_url("**/tickets/*?done=submitted")
    assert page.locator("#ticket-status").inner_text() == "queued"
    assert "Ticket queued." in page.locator(".note").inner_text()
    page.goto("/")
    page.click('a[data-count-of="queued"]')
    page.wait_for_url("**/tickets?status=queued")
    assert page.locator("#tickets tbody tr").count() == 1 and "add() subtracts" in page.locator("#tickets").inner_text()
    shot(page, "tickets-filtered")


def test_swagger_ui_renders_from_this_server_alone(browser: Any, served: tuple[Server, dict[str, str]]) -> None:
    server, tokens = served
    page = logged_in(browser, server.url, tokens["viewer"])
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else elsewhere.append(r.url))
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/api/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Fleet" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-summary-path", has_text="/api/tickets").count() >= 1
    assert elsewhere == [] and refused == []
    shot(page, "api-docs")
