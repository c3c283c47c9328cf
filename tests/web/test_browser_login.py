"""A person in headless Chromium logs in the two ways Fleet is served beyond loopback: its own TLS, and behind a
TLS-terminating reverse proxy that Fleet trusts (`fleet web --trusted-proxy`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.web.serving import Listener
from tests.web.conftest import Server, free_port, make_fleet, self_signed, settings_for
from tests.web.test_browser import browser, shot

__all__ = ["browser"]  # the fixture, shared with the other browser tests
HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}


def reverse_proxy(upstream: str) -> Any:
    """An ASGI app passing every request to `upstream`, as nginx with `proxy_set_header X-Forwarded-Proto` does."""
    client = httpx.AsyncClient(base_url=upstream)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        headers += [(b"x-forwarded-proto", scope["scheme"].encode()), (b"x-forwarded-for", b"198.51.100.4")]
        url = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        answer = await client.request(scope["method"], url, headers=headers, content=body)
        passed = [(k, v) for k, v in answer.headers.raw if k.lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": answer.status_code, "headers": passed})
        await send({"type": "http.response.body", "body": answer.content})

    return app


@pytest.fixture
def fleet_app(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    app = create_app(settings_for(make_fleet(tmp_path)), celery_dispatcher)
    yield app, new_token(app.state.fleet.db, Role.ADMIN, "admin1", "test")[1]
    app.state.fleet.db.dispose()


def log_in(browser: Any, url: str, token: str, name: str) -> None:
    context = browser.new_context(base_url=url, ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    assert page.locator("h1").inner_text() == "Fleet"
    [cookie] = [c for c in context.cookies() if c["name"] == "fleet_session"]
    assert cookie["secure"] and cookie["httpOnly"]
    shot(page, name)
    context.close()


def test_log_in_over_fleets_own_tls(browser: Any, fleet_app: tuple[Any, str], tmp_path: Path) -> None:
    app, token = fleet_app
    cert, key = self_signed(tmp_path)
    with Server(app, Listener("127.0.0.1", free_port(), cert, key)) as server:
        assert server.url.startswith("https://")
        log_in(browser, server.url, token, "login-tls")


def test_log_in_behind_a_trusted_tls_proxy(browser: Any, fleet_app: tuple[Any, str], tmp_path: Path) -> None:
    app, token = fleet_app
    cert, key = self_signed(tmp_path)
    fleet = Listener("127.0.0.1", free_port(), trusted_proxies=("127.0.0.1",))
    with Server(app, fleet) as upstream:
        proxy = Server(reverse_proxy(upstream.url), Listener("127.0.0.1", free_port(), cert, key))
        with proxy:
            log_in(browser, proxy.url, token, "login-proxy")
