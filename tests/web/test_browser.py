"""A person in a real headless Chromium: log in, watch a ticket reach review live, read the diff, approve it.

Screenshots of every page go to FLEET_SCREENSHOTS (default tests/screenshots-out/). Chromium is Debian's
(/usr/bin/chromium), driven by Playwright; no browser is downloaded. Without it the test skips locally and fails
under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from system.git import git
from tests.web.conftest import OWNER, Server, add_sample_repo, make_fleet, queue, scripted_spec, settings_for

CHROMIUM = os.environ.get("FLEET_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("FLEET_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "screenshots-out")
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_chromium() -> None:
    missing = None
    if not shutil.which(CHROMIUM):
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is missing (pip install -e '.[test]')"
    if missing:
        if IN_CI:
            pytest.fail(missing + " (CI=true: the browser tests must run)")
        pytest.skip(missing)


@pytest.fixture
def browser() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_log_in_watch_a_ticket_reach_review_live_and_approve_it(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    fleet = make_fleet(tmp_path)
    app = create_app(settings_for(fleet), celery_dispatcher, sse_seconds=60, poll_seconds=0.2)
    repo = add_sample_repo(fleet, app)
    _, token = new_token(app.state.fleet.db, Role.ADMIN, OWNER, "test")

    with Server(app) as server:
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)

        page.goto("/tickets")
        assert page.url.endswith("/login")  # no session: every page sends you to the login form
        shot(page, "1-login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/")
        assert page.locator("h1").inner_text() == "Fleet"

        [ticket] = queue(app, scripted_spec("add() subtracts", "fix-add", "tests/test_calc.py::test_add fails"))
        page.goto(f"/tickets/{ticket}")
        badge = page.locator("#ticket-status")
        assert badge.inner_text() == "queued"
        listing = context.new_page()
        listing.goto("/tickets")
        assert listing.locator(f'[data-status-of="{ticket}"]').inner_text() == "queued"
        assert listing.locator("#review-badge").is_hidden()  # nothing waits for review yet
        for p in (page, listing):  # a marker that a reload would wipe
            p.evaluate("window.__sameDocument = true")

        workers = fleet.popen("up", "--until-idle", "--concurrency", "2")
        try:
            # expect() polls with Playwright's own injected script: no eval, so the page's CSP stays on.
            expect(page.locator("#ticket-status")).to_have_text("needs_review", timeout=60_000)
            expect(listing.locator(f'[data-status-of="{ticket}"]')).to_have_text("needs_review")
            expect(listing.locator("#review-badge")).to_have_text("1")  # the navigation says work waits
            expect(listing.locator("#review-badge")).to_have_class("badge new")
        finally:
            output, _ = workers.communicate(timeout=60)
        assert workers.returncode == 0, output
        assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
        assert listing.evaluate("window.__sameDocument") is True
        shot(listing, "3-tickets")

        page.locator("#timeline .diff-link a", has_text="drawn above").click()  # the candidate's diff, drawn once
        added = page.locator("details.diff[open] .hl .unified .gi", has_text="return a + b")
        assert added.is_visible()
        assert "tests/test_calc.py::test_add" in page.locator(".verification").first.inner_text()
        shot(page, "4-ticket")

        page.goto("/review")
        assert page.locator(f"#review-{ticket}").is_visible()
        opened = page.locator(f"#review-{ticket} details.diff[open] .hl .unified .gi", has_text="return a + b")
        assert opened.is_visible()
        shot(page, "5-review")

        page.goto(f"/tickets/{ticket}")
        page.click("button.approve")
        page.wait_for_url(f"**/tickets/{ticket}?done=approved")
        assert page.locator("#ticket-status").inner_text() == "approved"
        assert "Approved: the diff landed as a branch." in page.locator(".note").inner_text()
        assert "return a + b" in git("show", f"fleet/ticket-{ticket}:calc.py", cwd=repo)
        assert f"Landed as branch fleet/ticket-{ticket}" in page.locator("#ticket-branch").inner_text()

        page.goto("/")
        assert page.locator("svg.chart").count() == 2
        shot(page, "2-fleet")
        page.goto("/tokens")
        shot(page, "6-tokens")
        listing.close()
        context.close()
