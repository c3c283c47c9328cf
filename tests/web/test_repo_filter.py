"""A list filtered by a repository nobody registered says so, naming the closest registered name, as
`fleet tickets --repo` does: an empty list would read as "no tickets there" to someone who mistyped the name."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest

from db import queries
from tests.web.conftest import app_with_token

UNKNOWN = "unknown repo 'clac' (did you mean 'calc'? known: calc, quiet)"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A viewer's client of an app with two repositories, calc with a ticket and quiet with none."""
    from fastapi.testclient import TestClient

    app = app_with_token(tmp_path_factory.mktemp("filter"))
    db = app.state.fleet.db
    with db.session() as s:
        calc, _ = (queries.add_repo(s, name=name, source="/nowhere", test_cmd="true") for name in ("calc", "quiet"))
        queries.add_ticket(s, ["shell"], repo_id=calc.id, title="t", base_ref="HEAD", base_sha="0" * 40, agent="shell")
    with TestClient(app, base_url="https://localhost", headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        yield c
    db.dispose()


@pytest.mark.parametrize("path", ["/api/tickets", "/api/review"])
def test_the_api_names_an_unknown_repo_filter_and_the_one_meant(client: Any, path: str) -> None:
    answer = client.get(path, params={"repo": "clac"})
    assert (answer.status_code, answer.json()) == (404, {"detail": UNKNOWN})
    assert client.get(path, params={"repo": "quiet"}).json() == []  # a registered repo without tickets is empty


def test_the_api_names_an_unknown_repo_past_the_last_page_too(client: Any) -> None:
    answer = client.get("/api/tickets", params={"repo": "clac", "before": 1})
    assert (answer.status_code, answer.json()) == (404, {"detail": UNKNOWN})
    assert client.get("/api/tickets", params={"repo": "calc", "before": 1}).json() == []


@pytest.mark.parametrize("path", ["/tickets", "/review"])
def test_the_pages_show_an_unknown_repo_filter_and_the_one_meant(client: Any, path: str) -> None:
    answer = client.get(path, params={"repo": "clac"})
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert UNKNOWN in unescape(answer.text)
    quiet = client.get(path, params={"repo": "quiet"})
    assert quiet.status_code == 200 and "unknown repo" not in quiet.text
