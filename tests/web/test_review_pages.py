"""The review list's pages hold their place: a next-page link carries the last ticket's priority as it was read, so
a priority changed between two pages moves no page boundary, and no ticket is skipped or shown twice for it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from db import queries
from db.lifecycle import TicketStatus
from db.models import Ticket
from tests.web.conftest import app_with_token
from tests.web.test_pages import CSRF

PRIORITIES = (50, 40, 30, 20, 10, 0)


@pytest.fixture
def app(tmp_path: Any) -> Any:
    """An app whose review list holds six tickets, one per priority of PRIORITIES, in app.state.waiting (in order)."""
    app = app_with_token(tmp_path, "reviewer")
    with app.state.fleet.db.session() as s:
        repo = queries.add_repo(s, name="calc", source="/nowhere", test_cmd="true")
        fields = dict(repo_id=repo.id, base_ref="HEAD", base_sha="0" * 40, agent="shell")
        tickets = [
            queries.add_ticket(
                s, ["shell"], title=f"p{p}", priority=p, status=TicketStatus.NEEDS_REVIEW.value, **fields
            )
            for p in PRIORITIES
        ]
        app.state.waiting = [t.id for t in tickets]
    yield app
    app.state.fleet.db.dispose()


def prioritize(app: Any, changes: dict[int, int]) -> None:
    """Set tickets' priorities by hand (Fleet itself sets a priority only at submission)."""
    with app.state.fleet.db.session() as s:
        for ticket_id, priority in changes.items():
            s.execute(update(Ticket).where(Ticket.id == ticket_id).values(priority=priority))


def client_of(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="https://localhost", headers={"Authorization": f"Bearer {app.state.token}"})


def logged_in(app: Any) -> Any:
    """A browser's client, logged in with the app's token through the login form."""
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="https://localhost")
    csrf = CSRF.search(client.get("/login").text).group(1)
    answer = client.post("/login", data={"token": app.state.token, "csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    return client


def api_pages(app: Any, between: dict[int, int]) -> list[int]:
    """The ids of every page of /api/review, two a page, with the priorities `between` set after the first page."""
    client, seen = client_of(app), []
    answer = client.get("/api/review", params={"limit": 2})
    seen += [t["id"] for t in answer.json()]
    prioritize(app, between)
    while "link" in answer.headers:
        answer = client.get(answer.headers["link"].removeprefix("<").split(">;")[0])
        seen += [t["id"] for t in answer.json()]
    return seen


def test_a_priority_changed_between_pages_skips_and_repeats_no_ticket(app: Any) -> None:
    first, last_read, later, unread = app.state.waiting[0], app.state.waiting[1], app.state.waiting[3:], 4
    # The page's last ticket up past the first, the first and an unread one moved within their own side of the place.
    between = {last_read: 90, first: 60, app.state.waiting[unread]: 25}
    seen = api_pages(app, between)
    assert sorted(seen) == sorted(app.state.waiting) and len(seen) == len(set(seen)), seen
    assert seen[2:] == [app.state.waiting[2], app.state.waiting[unread], *later[:1], *later[2:]]


def test_the_place_holds_when_the_last_ticket_read_leaves_the_list_with_another_priority(app: Any) -> None:
    last_read = app.state.waiting[1]
    client = client_of(app)
    first = client.get("/api/review", params={"limit": 2})
    with app.state.fleet.db.session() as s:
        s.execute(update(Ticket).where(Ticket.id == last_read).values(priority=-1, status="cancelled"))
    rest = client.get(first.headers["link"].removeprefix("<").split(">;")[0]).json()
    assert [t["id"] for t in rest] == app.state.waiting[2:4]


def test_the_review_page_links_its_next_page_with_the_place(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.web import queues

    monkeypatch.setattr(queues, "REVIEW_PAGE", 2)
    client, shown = logged_in(app), re.compile(r'<article class="review" id="review-(\d+)">')
    first = client.get("/review")
    assert [int(i) for i in shown.findall(first.text)] == app.state.waiting[:2]
    following = re.search(r'<a id="next-page" href="([^"]+)">', first.text).group(1).replace("&amp;", "&")
    assert following.endswith(f"&after={app.state.waiting[1]}&priority=40")
    prioritize(app, {app.state.waiting[1]: 90})
    assert [int(i) for i in shown.findall(client.get(following).text)] == app.state.waiting[2:4]


def test_a_priority_without_its_ticket_is_one_line(app: Any) -> None:
    answer = client_of(app).get("/api/review", params={"priority": 3})
    assert (answer.status_code, answer.json()) == (
        422,
        {"detail": "priority: give it with after (a next-page link gives both)"},
    )
    answer = client_of(app).get("/api/review", params={"after": 1, "priority": 10**7})
    assert answer.json() == {"detail": "priority: must be at most 1000000 (got '10000000')"}
