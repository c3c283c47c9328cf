"""Review in a real headless Chromium: approve after a reject, candidates grouped and chosen, a line comment that
reaches the next attempt's prompt. Screenshots go to $FLEET_SCREENSHOTS (default tests/screenshots-out/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from system.git import git
from tests.conftest import Fleet
from tests.web.conftest import OWNER, add_sample_repo, make_fleet, queue, settings_for
from tests.web.test_browser import Server, browser  # noqa: F401 (the fixture)
from workers.agents.scripted import scripted_command

SHOTS = Path(os.environ.get("FLEET_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "screenshots-out")
BODY = "tests/test_calc.py::test_add fails"
BOTH = "fix-add+fix-div"

pytestmark = pytest.mark.slow


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


class Review:
    """A Fleet with the sample repository, the web app serving it, and a reviewer logged in in Chromium."""

    def __init__(self, fleet: Fleet, app: Any, repo: Path, page: Any) -> None:
        self.fleet, self.app, self.repo, self.page = fleet, app, repo, page

    def submit(self, *script: str, fanout: int = 1) -> int:
        from db.specs import TicketSpec

        spec = TicketSpec(
            repo="calc", title="add() subtracts", body=BODY, agent_cmd=" ".join(scripted_command(*script)), attempts=1
        )
        [ticket] = queue(self.app, spec.model_copy(update={"fanout": fanout}))
        self.fleet.up(concurrency=2)
        return ticket

    def candidates(self, ticket: int) -> list[dict[str, Any]]:
        return self.fleet.json("review", "show", str(ticket))["candidates"]  # type: ignore[no-any-return]

    def landed(self, ticket: int) -> tuple[str, str]:
        branch = f"fleet/ticket-{ticket}"
        return git("show", f"{branch}:calc.py", cwd=self.repo), git("log", "-1", "--format=%B", branch, cwd=self.repo)


@pytest.fixture
def review(browser: Any, tmp_path: Path) -> Iterator[Review]:  # noqa: F811 (the fixture imported above)
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    fleet = make_fleet(tmp_path)
    app = create_app(settings_for(fleet), celery_dispatcher, sse_seconds=60, poll_seconds=0.2)
    repo = add_sample_repo(fleet, app)
    _, token = new_token(app.state.fleet.db, Role.REVIEWER, OWNER, "test")
    with Server(app) as server:
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto("/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/")
        yield Review(fleet, app, repo, page)
        context.close()
    app.state.fleet.db.dispose()


def test_approve_after_a_reject_lands_the_new_attempt(review: Review) -> None:
    page = review.page
    ticket = review.submit("by-attempt", "fix-add", BOTH)
    [first] = review.candidates(ticket)
    page.goto("/review")
    page.fill(f"#reject-{ticket}-{first['id']} textarea[name=feedback]", "also fix div")
    page.click(f"#reject-{first['id']}")
    page.wait_for_url(f"**/tickets/{ticket}?done=rejected_retry")
    review.fleet.up()
    [second] = review.candidates(ticket)
    assert second["number"] == 2 and second["id"] != first["id"]
    page.goto(f"/tickets/{ticket}")
    assert "rejected by a reviewer" in page.locator(f"#attempt-{first['id']}").inner_text()
    assert "best candidate" in page.locator(f"#attempt-{second['id']}").inner_text()
    page.goto("/review")
    assert page.locator(f"#candidate-{first['id']}").count() == 0  # a rejected diff is never offered again
    shot(page, "review-after-reject")
    page.click(f"#approve-{second['id']}")
    page.wait_for_url(f"**/tickets/{ticket}?done=approved")
    code, message = review.landed(ticket)
    assert "return a / b" in code and f"Fleet ticket {ticket}, run 1, attempt 2 (verified)" in message


def test_identical_diffs_are_grouped_and_the_reviewer_chooses_one(review: Review) -> None:
    page = review.page
    ticket = review.submit("by-run", BOTH, "fix-add", BOTH, BOTH, fanout=4)
    best, other = review.candidates(ticket)
    page.goto("/review")
    article = page.locator(f"#review-{ticket}")
    assert article.locator(".candidate").count() == 2
    assert page.locator(f"#agreement-{best['id']}").inner_text() == "3 of 4 runs produced this diff"
    assert page.locator(f"#agreement-{other['id']}").inner_text() == "1 of 4 runs produced this diff"
    diff = page.locator(f"#candidate-{best['id']} .review-diff")
    assert diff.locator(".diff-files li").inner_text().startswith("calc.py")
    assert diff.locator(".diff-table.unified").is_visible() and not diff.locator(".diff-table.split").is_visible()
    diff.locator(".diff-mode[data-mode=split]").click()
    assert diff.locator(".diff-table.split").is_visible() and not diff.locator(".diff-table.unified").is_visible()
    assert diff.locator(".diff-table.split td.gi .k", has_text="return").count() == 2  # highlighted, both fixes
    shot(page, "review-candidates-split")
    page.click(f"#approve-{other['id']}")  # not the best: the reviewer's choice
    page.wait_for_url(f"**/tickets/{ticket}?done=approved")
    code, message = review.landed(ticket)
    assert "return a + b" in code and "return a // b" in code  # the lone fix-add diff, not the agreed one
    assert "run 2, attempt 1 (verified; 1 of 4 runs produced this diff)" in message


def test_a_line_comment_reaches_the_next_attempts_prompt(review: Review) -> None:
    page = review.page
    ticket = review.submit("fix-add")
    [first] = review.candidates(ticket)
    page.goto("/review")
    added = page.locator(f"#candidate-{first['id']} .diff-table.unified tr:has(td.gi) button.line-comment").first
    line = added.get_attribute("data-line")
    added.click()
    page.fill(f"#candidate-{first['id']} .comment-row textarea", "use operator.add <b>here</b>")
    shot(page, "review-line-comment")
    page.fill(f"#reject-{ticket}-{first['id']} textarea[name=feedback]", "Nearly.")
    page.click(f"#reject-{first['id']}")
    page.wait_for_url(f"**/tickets/{ticket}?done=rejected_retry")
    review.fleet.up()
    shown = review.fleet.json("show", str(ticket))
    new = shown["runs"][0]["attempts"][1]
    expected = f"calc.py:{line}: use operator.add <b>here</b>"
    assert expected in new["feedback_in"] and "Nearly." in new["feedback_in"]
    assert expected in review.fleet.run("logs", str(new["id"])).stdout  # the prompt the agent read
    page.goto(f"/tickets/{ticket}")
    page.locator(f"#fb-in-{new['id']} summary").click()
    assert expected in page.locator(f"#fb-in-{new['id']} pre").inner_text()  # shown as text, never as markup
