"""A submitter queues a ticket from the tickets page; the dashboard's counts lead to the lists; the review badge
learns of new work; error pages keep the navigation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Web, add_sample_repo, make_fleet, make_tokens, settings_for
from tests.web.test_pages import CSRF, csrf_of, login

AGENT = "workers.agents.scripted_class:FixAdd"  # needs no command, so a submitter may name it


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Web]:
    """A Fleet with the sample repo and no tickets; nothing runs."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path)
    settings = settings_for(fleet).model_copy(update={"agent_classes": [AGENT]})
    app = create_app(settings, celery_dispatcher, sse_seconds=0.3, poll_seconds=0.05)
    add_sample_repo(fleet, app)
    yield Web(fleet=fleet, settings=settings, app=app, tokens=make_tokens(app), tickets={})
    app.state.fleet.db.dispose()


def post_ticket(client: Any, **fields: str) -> Any:
    return client.post("/tickets", data={"csrf": csrf_of(client, "/tickets"), "repo": "calc"} | fields)


def test_a_submitter_queues_a_ticket_from_the_tickets_page(fresh: Web) -> None:
    client = login(fresh, "submitter")
    page = client.get("/tickets").text
    assert 'id="new-ticket"' in page and 'id="ticket-agent-cmd"' not in page  # the command is for admins
    made = post_ticket(client, title="add() subtracts", body="tests/test_calc.py::test_add fails", agent=AGENT)
    assert str(made.url).endswith("?done=submitted") and "Ticket queued." in made.text
    assert made.url.path.startswith("/tickets/") and "add() subtracts" in made.text and ">queued<" in made.text


def test_the_form_shows_the_specs_one_line_errors_and_keeps_what_was_typed(fresh: Web) -> None:
    client = login(fresh, "submitter")
    empty = post_ticket(client, title="  ", body="kept text")
    assert (
        empty.status_code == 422
        and '<p class="error" role="alert" id="ticket-error">title: must not be empty' in empty.text
    )
    assert "kept text" in empty.text and '<details class="new-ticket" id="new-ticket" open>' in empty.text
    many = post_ticket(client, title="t", attempts="99", agent=AGENT)
    assert "attempts: must be at most 50 (got 99)" in many.text
    word = post_ticket(client, title="t", attempts="three", agent=AGENT)
    assert "attempts: must be a whole number (got &#39;three&#39;)" in word.text
    command = post_ticket(client, title="t", agent_cmd="rm -rf /")
    assert command.status_code == 403 and "admin role" in command.text
    assert post_ticket(client, title="t", agent=AGENT, csrf="forged").status_code in (403, 422)
    viewer = login(fresh, "viewer")
    assert 'id="new-ticket"' not in viewer.get("/tickets").text
    assert viewer.post("/tickets", data={"csrf": csrf_of(viewer), "repo": "calc", "title": "t"}).status_code == 403


def test_dashboard_counts_link_to_the_filtered_lists(fresh: Web) -> None:
    client = login(fresh, "submitter")
    post_ticket(client, title="one", agent=AGENT)
    page = client.get("/").text
    assert '<a href="/tickets?status=queued" data-count-of="queued">1</a>' in page
    assert '<a id="backlog" href="/tickets?status=needs_review">0</a>' in page
    assert ">one</a>" in client.get("/tickets?status=queued").text
    assert ">one</a>" not in client.get("/tickets?status=needs_review").text


def test_the_review_badge_stream_counts_tickets_waiting_for_review(web: Web) -> None:
    client = login(web, "viewer")
    assert 'data-live-review="/events/review"' in client.get("/tickets").text
    with client.stream("GET", "/events/review") as stream:
        text = "".join(stream.iter_text())
    waiting = len(client.get("/api/review").json())
    assert text.count("event: review") == 1 and f'"count":{waiting}' in text


def test_error_pages_keep_the_navigation(web: Web) -> None:
    client = login(web, "viewer")
    for path, status in (("/tickets/999999", 404), ("/tokens", 403), ("/no/such/page", 404)):
        answer = client.get(path)
        assert answer.status_code == status and '<a href="/review"' in answer.text and "Log out" in answer.text
    assert web.client().get("/no/such/page").status_code == 404
    assert web.client().get("/api/nope").json() == {"detail": "Not Found"}
    assert CSRF.search(client.get("/").text)


def test_rates_read_the_same_in_the_cli_and_the_web_and_verifications_say_what_they_count(web: Web) -> None:
    [shell] = [row for row in web.fleet.json("stats") if row["agent"] == "shell"]
    percent = f"{shell['verified_rate']:.0%}"
    assert percent.endswith("%") and f" {percent} " in web.fleet.run("stats").stdout
    page = login(web, "viewer").get("/").text
    assert f"<td>{percent}</td>" in page  # the dashboard's agents table
    assert "verifications run," in page and " verified, " not in page
