"""A NUL byte in a URL's filter or page cursor is a 400 naming it, on PostgreSQL too, whose text takes none (it was a
500 from the database driver)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_test_fleet, need_server, new_pg_database
from tests.web.conftest import settings_for

URLS = ["/api/repos?after=a%00b", "/api/tickets?repo=%00", "/api/review?agent=x%00", "/review?repo=%00"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    need_server("PostgreSQL", "127.0.0.1", 5432)
    with new_pg_database("nul_urls") as url:
        fleet = make_test_fleet(tmp_path_factory.mktemp("nul"), url, "embedded")
        app = create_app(settings_for(fleet), celery_dispatcher)
        token = new_token(app.state.fleet.db, Role.ADMIN, "admin1", "test")[1]
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(app, base_url="https://localhost", headers=headers, raise_server_exceptions=False) as c:
            yield c
        app.state.fleet.db.dispose()


@pytest.mark.parametrize("url", URLS)
def test_a_nul_byte_in_a_url_is_named(client: Any, url: str) -> None:
    answer = client.get(url)
    assert answer.status_code == 400, answer.text
    assert "NUL byte" in answer.text


def test_a_url_without_one_is_served(client: Any) -> None:
    assert client.get("/api/repos?after=a%2500b").status_code == 200  # "%00" written out, not a NUL byte
