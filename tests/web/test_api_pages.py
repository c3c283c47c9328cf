"""Lists that grow with history come a bounded page at a time, each naming the next in a Link header: a ticket's
events, the repositories and the tokens, as the tickets and the review list already do."""

from __future__ import annotations

from typing import Any

import pytest

from db import queries
from tests.web.conftest import app_with_token

EVENTS, REPOS = 7, 5


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An admin's client of an app with REPOS repositories, a ticket with EVENTS events more, and five tokens."""
    from fastapi.testclient import TestClient

    from orchestrator.web.auth import Role, new_token

    app = app_with_token(tmp_path_factory.mktemp("pages"), "admin")
    db = app.state.fleet.db
    with db.session() as s:
        repos = [queries.add_repo(s, name=f"repo-{n}", source="/nowhere", test_cmd="true") for n in range(REPOS)]
        ticket = queries.add_ticket(
            s, ["shell"], repo_id=repos[0].id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
        for n in range(EVENTS):
            queries.log_event(s, "note", f"event {n}", ticket_id=ticket.id)
    for n in range(4):
        new_token(db, Role.VIEWER, f"viewer-{n}", "test")
    app.state.ticket = ticket.id
    with TestClient(app, base_url="https://localhost", headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        c.app_state = app.state
        yield c
    db.dispose()


def walk(client: Any, url: str, limit: int) -> tuple[list[Any], list[str]]:
    """Every row of a list read `limit` at a time by following the Link headers, and the links followed."""
    rows, links = [], []
    answer = client.get(url, params={"limit": limit})
    while True:
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) <= limit
        rows += answer.json()
        if "link" not in answer.headers:
            return rows, links
        link = answer.headers["link"]
        assert link.startswith("<") and link.endswith('>; rel="next"'), link
        links.append(link[1 : -len('>; rel="next"')])
        answer = client.get(links[-1])


@pytest.mark.parametrize(
    ("path", "key"),
    [("/api/tickets/{ticket}/events", "id"), ("/api/repos", "name"), ("/api/tokens", "id")],
)
def test_a_growing_list_comes_a_page_at_a_time_each_row_once(client: Any, path: str, key: str) -> None:
    url = path.format(ticket=client.app_state.ticket)
    whole = client.get(url).json()
    rows, links = walk(client, url, 2)
    assert [row[key] for row in rows] == [row[key] for row in whole]  # the same rows, in order, each once
    assert len(links) == (len(whole) - 1) // 2
    assert links[0] == f"{url}?limit=2&after={whole[1][key]}"


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "limit: must be at least 1 (got '0')"),
        ("limit=1001", "limit: must be at most 1000 (got '1001')"),
        ("limit=many", "limit: must be a whole number (got 'many')"),
        ("after=0", "after: must be at least 1 (got '0')"),
        ("after=last", "after: must be a whole number (got 'last')"),
    ],
)
def test_a_bad_cursor_or_limit_is_one_line(client: Any, query: str, detail: str) -> None:
    for path in (f"/api/tickets/{client.app_state.ticket}/events", "/api/tokens"):
        answer = client.get(f"{path}?{query}")
        assert (answer.status_code, answer.json()) == (422, {"detail": detail}), path
    if query.startswith("limit"):
        assert client.get(f"/api/repos?{query}").json() == {"detail": detail}
    assert client.get("/api/repos?after=").json() == {"detail": "after: must not be empty (got '')"}


def test_the_default_page_is_bounded(client: Any) -> None:
    schema = client.get("/api/openapi.json").json()["paths"]
    for path, default in (("/api/tickets/{ticket_id}/events", 200), ("/api/repos", 100), ("/api/tokens", 200)):
        params = {p["name"]: p["schema"] for p in schema[path]["get"]["parameters"]}
        assert (params["limit"].get("default"), params["limit"]["maximum"]) == (default, 1000), path
        assert "after" in params and "Link header" in schema[path]["get"]["description"], path
