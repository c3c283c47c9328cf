"""A NUL character in a ticket's field or a reviewer's feedback, sent as JSON or from a form, is one line on
PostgreSQL, whose text holds none (it was a server error there), as `%00` in a URL already is (test_nul_urls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from system.settings import Settings
from tests.conftest import make_test_fleet, need_server, new_pg_database
from tests.web.conftest import OWNER, Web, add_sample_repo, make_tokens, queue, scripted_spec
from tests.web.test_pages import csrf_of, login

HOLDS_NUL = "holds a NUL character, which no text Fleet keeps may hold"


@pytest.fixture(scope="module")
def web_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The app on a PostgreSQL database of its own, with one ticket waiting for review."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    need_server("PostgreSQL", "127.0.0.1", 5432)
    tmp = tmp_path_factory.mktemp("nul")
    with new_pg_database("fleet_nul") as url:
        fleet = make_test_fleet(tmp, url, "embedded", FLEET_USER=OWNER)
        settings = Settings(home=fleet.home, database_url=url, broker_url="embedded")
        app = create_app(settings, celery_dispatcher)
        add_sample_repo(fleet, app)
        [review] = queue(app, scripted_spec("add() subtracts", "fix-add", "tests/test_calc.py::test_add fails"))
        fleet.up()
        yield Web(fleet=fleet, settings=settings, app=app, tokens=make_tokens(app), tickets={"review": review})
        app.state.fleet.db.dispose()


def submitted(web: Web, **fields: Any) -> Any:
    ticket = {"repo": "calc", "title": "t", "agent_cmd": "true"} | fields
    return web.client().post("/api/tickets", json=ticket, headers=web.headers("admin"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("repo", "ca\x00lc"), ("targets", ["tests/test_calc.py::test_add\x00"]), ("model", "gpt\x00")],
)
def test_a_nul_in_a_tickets_field_is_one_line(web_on_postgres: Web, field: str, value: Any) -> None:
    answer = submitted(web_on_postgres, **{field: value})
    assert (answer.status_code, answer.json()) == (422, {"detail": f"{field}: {HOLDS_NUL}"})


def test_a_nul_in_the_tickets_form_is_one_line_on_the_page(web_on_postgres: Web) -> None:
    client = login(web_on_postgres, "submitter")
    answer = client.post("/tickets", data={"csrf": csrf_of(client, "/tickets"), "repo": "ca\x00lc", "title": "kept"})
    assert answer.status_code == 422
    assert f'<p class="error" role="alert" id="ticket-error">repo: {HOLDS_NUL}' in answer.text


def test_a_nul_in_a_reviewers_feedback_is_one_line_and_the_ticket_still_waits(web_on_postgres: Web) -> None:
    ticket = web_on_postgres.tickets["review"]
    api = web_on_postgres.client().post(
        f"/api/tickets/{ticket}/reject", json={"feedback": "simpler\x00"}, headers=web_on_postgres.headers("reviewer")
    )
    assert (api.status_code, api.json()) == (422, {"detail": f"the feedback {HOLDS_NUL}"})
    client = login(web_on_postgres, "reviewer")
    form = {"csrf": csrf_of(client), "comment_path": "calc.py\x00", "comment_line": "1", "comment_text": "no"}
    page = client.post(f"/tickets/{ticket}/reject", data=form)
    assert page.status_code == 422 and f"the feedback {HOLDS_NUL}" in page.text
    shown = web_on_postgres.client().get(f"/api/tickets/{ticket}", headers=web_on_postgres.headers("viewer"))
    assert shown.json()["status"] == "needs_review"


def test_text_without_one_is_taken(web_on_postgres: Web) -> None:
    assert submitted(web_on_postgres, targets=["tests/test_calc.py::test_add"], model="gpt-4o").status_code == 201
