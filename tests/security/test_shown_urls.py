"""A password an older Fleet stored in a repository's URL (its source or its remote; new ones are refused) shows
nowhere a person reads the repository: `fleet repo list`, its JSON, the API's repositories. The push still sends it:
the workers and the delivery read the stored row, never what is shown."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from db import queries
from db.engine import Database
from orchestrator import review
from orchestrator.errors import FleetError
from orchestrator.sources import BaseRefs
from system.settings import Settings
from tests.conftest import Fleet
from tests.orchestrator.test_delivering import reviewable, shop
from tests.web.conftest import app_with_token
from tests.web.test_review_pages import logged_in

SOURCE = "https://user:secret@127.0.0.1/x.git"
REMOTE = "https://user:secret@127.0.0.1/y.git"


def stored_with_passwords(db: Database) -> None:
    with db.session() as s:
        queries.add_repo(s, name="x", source=SOURCE, test_cmd="true", settings={"deliver": "push", "remote": REMOTE})


def test_fleet_repo_list_shows_no_password(embedded: Fleet) -> None:
    embedded.run("repo", "list")  # makes the database
    stored_with_passwords(embedded.db())
    listed, as_json = embedded.run("repo", "list").stdout, embedded.run("repo", "list", "--json").stdout
    assert "https://user:***@127.0.0.1/x.git" in listed and "secret" not in listed
    assert "secret" not in as_json
    [repo] = embedded.json("repo", "list")
    assert (repo["source"], repo["settings"]["remote"]) == (
        "https://user:***@127.0.0.1/x.git",
        "https://user:***@127.0.0.1/y.git",
    )


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_the_apis_repositories_show_no_password(tmp_path: Path, role: str) -> None:
    from fastapi.testclient import TestClient

    app = app_with_token(tmp_path, role)
    try:
        stored_with_passwords(app.state.fleet.db)
        client = TestClient(app, base_url="https://localhost")
        answer = client.get("/api/repos", headers={"Authorization": f"Bearer {app.state.token}"})
        assert answer.status_code == 200, answer.text
        assert "secret" not in answer.text
        [repo] = answer.json()
        assert repo["source"] == "https://user:***@127.0.0.1/x.git"
    finally:
        app.state.fleet.db.engine.dispose()


def test_the_ticket_page_says_where_a_diff_landed_without_the_password(tmp_path: Path) -> None:
    app = app_with_token(tmp_path, "viewer")
    try:
        stored_with_passwords(app.state.fleet.db)
        with app.state.fleet.db.session() as s:
            fields = dict(repo_id=queries.get_repo(s, "x").id, base_ref="main", base_sha="0" * 40, agent="shell")
            ticket = queries.add_ticket(s, ["shell"], title="A is 2", status="approved", **fields)
            attempt = queries.add_attempt(s, ticket.runs[0], "prompt")
            queries.add_review(s, ticket_id=ticket.id, attempt_id=attempt.id, decision="approved", reviewer="ann",
                               branch=f"fleet/ticket-{ticket.id}", commit_sha="1" * 40)  # fmt: skip
            ticket_id = ticket.id
        page = logged_in(app).get(f"/tickets/{ticket_id}")
        assert page.status_code == 200, page.text
        landed = page.text[page.text.index('id="ticket-branch"') :].split("</p>")[0]
        assert "https://user:***@127.0.0.1/x.git" in landed and "secret" not in page.text
    finally:
        app.state.fleet.db.engine.dispose()


class _AskingForPassword(BaseHTTPRequestHandler):
    """A git server that asks for a password, writes down the one it is given, and then refuses the push."""

    given: list[str] = []

    def do_GET(self) -> None:
        sent = self.headers.get("Authorization")
        if sent is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="shop"')
        else:
            self.given.append(sent)
            self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def asking_server() -> Iterator[tuple[int, list[str]]]:
    given: list[str] = []
    handler = type("Handler", (_AskingForPassword,), {"given": given})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], given
    finally:
        server.shutdown()
        server.server_close()


def test_the_push_still_sends_the_stored_password(
    database_url: str, tmp_path: Path, asking_server: tuple[int, list[str]]
) -> None:
    from db.migrate import upgrade

    port, given = asking_server
    db = Database(database_url)
    upgrade(db)
    work, base = shop(tmp_path)
    ticket = reviewable(db, work, base, f"http://user:secret@127.0.0.1:{port}/shop.git")
    with pytest.raises(FleetError) as failed:
        review.approve(db, Settings(home=tmp_path / "home"), ticket, "ann")
    assert "secret" not in str(failed.value) and f"http://user:***@127.0.0.1:{port}/shop.git" in str(failed.value)
    assert f"Basic {base64.b64encode(b'user:secret').decode()}" in given


def test_a_ticket_for_a_source_that_does_not_answer_shows_no_password(tmp_path: Path) -> None:
    refs = BaseRefs(tmp_path / "mirrors")
    with pytest.raises(FleetError) as failed:
        refs.resolve(1, "http://user:secret@127.0.0.1:1/x.git", "main", "x")
    assert str(failed.value).startswith("cannot fetch http://user:***@127.0.0.1:1/x.git: ")
    assert "secret" not in str(failed.value)
