"""Logging out ends the session on the server: a copy of its cookie is refused afterwards, while the same token's
other logins and the token itself keep working."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import Server, app_with_token
from tests.web.test_serving import log_in

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = app_with_token(tmp_path)
    yield app
    app.state.fleet.db.dispose()


def logged_in(server: Server, token: str) -> str:
    """The session cookie of a new login, as a browser (or whoever copied it) holds it."""
    with httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, token).status_code == 200
        cookie: str = browser.cookies["fleet_session"]
    return cookie


def with_cookie(server: Server, cookie: str, path: str) -> httpx.Response:
    """A request carrying only that cookie (its bytes as given): a fresh client, as a replayed copy comes."""
    with httpx.Client(base_url=server.url) as client:
        return client.get(path, headers={"Cookie": f"fleet_session={cookie}".encode()})


def log_out(server: Server, cookie: str) -> None:
    with httpx.Client(base_url=server.url, cookies={"fleet_session": cookie}) as browser:
        csrf = CSRF.search(browser.get("/").text)
        assert csrf, "the dashboard has no logout form"
        answer = browser.post("/logout", data={"csrf": csrf.group(1)})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")


def test_a_copied_cookie_is_refused_after_logout_and_other_logins_stay(app: Any) -> None:
    with Server(app) as server:
        copied, other = logged_in(server, app.state.token), logged_in(server, app.state.token)
        assert copied != other
        assert with_cookie(server, copied, "/api/me").status_code == 200
        log_out(server, copied)
        refused = with_cookie(server, copied, "/api/me")
        assert (refused.status_code, refused.json()) == (401, {"detail": "a valid API token is required"})
        page = with_cookie(server, copied, "/")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        assert with_cookie(server, other, "/api/me").json()["name"] == "viewer1"
        bearer = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {app.state.token}"})
        assert bearer.status_code == 200


def test_a_session_ends_after_twelve_hours_and_with_its_token(app: Any) -> None:
    from db.models import WebSession
    from db.tokens import revoke

    db = app.state.fleet.db
    with Server(app) as server:
        old, live = logged_in(server, app.state.token), logged_in(server, app.state.token)
        with db.session() as s:
            s.get(WebSession, int(old.split(".")[0])).created_at -= timedelta(hours=12, seconds=1)
        assert with_cookie(server, old, "/api/me").status_code == 401
        assert with_cookie(server, live, "/api/me").status_code == 200
        with db.session() as s:
            revoke(s, s.get(WebSession, int(live.split(".")[0])).token_id)
        assert with_cookie(server, live, "/api/me").status_code == 401


def test_a_token_keeps_a_bounded_number_of_sessions_and_a_new_login_ends_its_oldest(app: Any) -> None:
    from db.models import WebSession
    from db.websessions import SESSIONS_PER_TOKEN

    with Server(app) as server:
        cookies = [logged_in(server, app.state.token) for _ in range(SESSIONS_PER_TOKEN + 1)]
        assert with_cookie(server, cookies[0], "/api/me").status_code == 401  # the oldest, ended by the last login
        assert all(with_cookie(server, c, "/api/me").status_code == 200 for c in cookies[1:])
    with app.state.fleet.db.session() as s:
        assert s.query(WebSession).count() == SESSIONS_PER_TOKEN


@pytest.mark.parametrize("forged", ["1.", "1", ".x", "1." + "A" * 42, "1." + "é" * 43, "99999999999999." + "A" * 43])
def test_a_forged_session_cookie_is_refused(app: Any, forged: str) -> None:
    with Server(app) as server:
        logged_in(server, app.state.token)  # session 1 exists: only its secret is missing
        assert with_cookie(server, forged, "/api/me").status_code == 401


def test_logging_in_again_ends_the_browsers_earlier_session(app: Any) -> None:
    # The browser's cookie is replaced; a copy of the one it held must not stay valid for twelve hours.
    with Server(app) as server, httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, app.state.token).status_code == 200
        earlier = browser.cookies["fleet_session"]
        assert log_in(browser, app.state.token).status_code == 200
        assert browser.cookies["fleet_session"] != earlier
        assert with_cookie(server, earlier, "/api/me").status_code == 401
        assert with_cookie(server, browser.cookies["fleet_session"], "/api/me").status_code == 200
