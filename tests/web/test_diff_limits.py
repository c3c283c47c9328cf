"""Pages draw a bounded part of large diffs and transcripts, say what they left out and link to the whole as text;
a ticket page draws one attempt's diff, the others on demand; the review list is paged."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from db import queries
from db.specs import TicketSpec
from tests.web.conftest import (
    Server,
    Web,
    add_sample_repo,
    make_fleet,
    make_tokens,
    queue,
    scripted_spec,
    settings_for,
)
from tests.web.test_pages import login
from workers.agents.scripted import scripted_command

BODY = "tests/test_calc.py::test_add fails"
LINES = 133_300
HEADER = "diff --git a/big.txt b/big.txt\nnew file mode 100644\n--- /dev/null\n+++ b/big.txt\n"
BIG = f"{HEADER}@@ -0,0 +1,{LINES + 1} @@\n+<script>alert(1)</script>\n" + "+x\n" * LINES  # 400,000 characters
TRANSCRIPT = "".join(f"step {i}: ran the tests\n" for i in range(40_000))  # about 1 MB
PAGE_BYTES = 120_000  # a ticket page with BIG and TRANSCRIPT; drawn whole they took tens of MB
DRAWN = re.compile(r'<div class="review-diff ')
TRANSCRIPTS = re.compile(r'<details class="box transcript" id="transcript-(\d+)"')


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """Three tickets in review: one whose diff is BIG, one verified at its third attempt, one small."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path_factory.mktemp("limits"))
    app = create_app(settings_for(fleet), celery_dispatcher)
    add_sample_repo(fleet, app)
    third = scripted_command("by-attempt", "never", "never", "fix-add")
    multi = TicketSpec(repo="calc", title="third time", body=BODY, agent_cmd=" ".join(third), attempts=3)
    big, tries, small = queue(app, scripted_spec("big", "fix-add", BODY, 1), multi, scripted_spec("s", "fix-add", BODY))
    fleet.up()
    with app.state.fleet.db.session() as s:
        [attempt] = queries.load_ticket_tree(s, big).runs[0].attempts
        attempt.diff, attempt.transcript = BIG, TRANSCRIPT
    tickets = {"big": big, "tries": tries, "small": small}
    yield Web(fleet=fleet, settings=settings_for(fleet), app=app, tokens=make_tokens(app), tickets=tickets)
    app.state.fleet.db.dispose()


def attempts(web: Web, ticket: str) -> list[int]:
    with web.app.state.fleet.db.session() as s:
        return [a.id for run in queries.load_ticket_tree(s, web.tickets[ticket]).runs for a in run.attempts]


def test_a_huge_diff_is_drawn_in_part_says_what_it_left_out_and_links_to_the_whole(web: Web) -> None:
    client, [attempt] = login(web, "viewer"), attempts(web, "big")
    answer = client.get(f"/tickets/{web.tickets['big']}")
    assert answer.status_code == 200 and len(answer.content) < PAGE_BYTES
    page = answer.text
    assert f"Not drawn: 1 of 1 files ({LINES + 6:,} of {LINES + 6:,} lines)" in page
    assert f'big.txt <span class="add">+{LINES + 1}</span> <span class="del">-0</span>' in page
    assert f'<a class="raw-diff" href="/attempts/{attempt}/diff">The whole diff, as text</a>' in page
    assert "characters before these are not shown" in page and "step 39999: ran the tests" in page
    assert f'href="/attempts/{attempt}/transcript">The whole transcript, as text</a>' in page
    raw = client.get(f"/attempts/{attempt}/diff")
    assert (raw.status_code, raw.text) == (200, BIG)
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.headers["content-disposition"] == f'inline; filename="attempt-{attempt}.diff"'
    assert client.get(f"/attempts/{attempt}/transcript").text == TRANSCRIPT
    assert web.client().get(f"/attempts/{attempt}/diff", follow_redirects=False).status_code == 303  # to /login
    assert client.get("/attempts/999999/diff").status_code == 404


def test_a_small_diff_is_drawn_whole(web: Web) -> None:
    page = login(web, "viewer").get(f"/tickets/{web.tickets['small']}").text
    assert "Not drawn" not in page and len(DRAWN.findall(page)) == 1
    assert '<span class="k">return</span> <span class="n">a</span> <span class="o">+</span>' in page


def test_a_ticket_page_draws_one_attempts_diff_and_the_others_on_demand(web: Web) -> None:
    client, ticket = login(web, "reviewer"), web.tickets["tries"]
    first, second, third = attempts(web, "tries")
    page = client.get(f"/tickets/{ticket}").text
    assert len(DRAWN.findall(page)) == 1 and f'open id="ticket-diff-{third}"' in page  # the verified candidate
    assert TRANSCRIPTS.findall(page) == [str(third)]  # its transcript; the others are links too
    for earlier in (first, second):
        link = f'<a href="/tickets/{ticket}?attempt={earlier}#diff-{earlier}">draw it</a>'
        assert f'<p class="box diff-link" id="diff-{earlier}">' in page and link in page
        assert f'href="/tickets/{ticket}?attempt={earlier}#transcript-{earlier}">draw it</a>' in page
    chosen = client.get(f"/tickets/{ticket}?attempt={first}").text
    assert len(DRAWN.findall(chosen)) == 1 and f'<details class="box diff" id="diff-{first}">' in chosen
    assert f'<p class="box diff-link" id="ticket-diff-{third}">' in chosen  # the candidate is the link now
    assert f'data-fragment="/tickets/{ticket}/live?attempt={first}"' in chosen  # a live refresh keeps the choice
    assert f'id="diff-{first}"><summary>' in client.get(f"/tickets/{ticket}/live?attempt={first}").text
    [other] = attempts(web, "small")[:1]
    wrong = client.get(f"/tickets/{ticket}?attempt={other}")
    assert wrong.status_code == 404 and f"attempt {other} is not an attempt of ticket {ticket}" in wrong.text


def test_the_review_list_comes_a_page_at_a_time_with_its_filters(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.web import queues

    monkeypatch.setattr(queues, "REVIEW_PAGE", 2)
    client, order = login(web, "reviewer"), [web.tickets[name] for name in ("big", "tries", "small")]
    shown = re.compile(r'<article class="review" id="review-(\d+)">')
    first = client.get("/review?repo=calc")
    assert [int(i) for i in shown.findall(first.text)] == order[:2] and len(first.content) < PAGE_BYTES
    assert len(DRAWN.findall(first.text)) == 2  # one diff per ticket, each bounded
    later = re.search(r'<a id="next-page" href="([^"]+)">', first.text).group(1).replace("&amp;", "&")
    assert later == f"/review?repo=calc&agent=&after={order[1]}&priority=0"  # the filter goes with the next page
    last = client.get(later).text
    assert [int(i) for i in shown.findall(last)] == order[2:]
    assert 'id="next-page"' not in last and '<a id="first-page" href="/review?repo=calc&amp;agent=">' in last
    assert shown.findall(client.get("/review?agent=nobody").text) == []
    assert "matches these filters" in client.get("/review?repo=calc&agent=nobody").text


def test_the_api_review_list_comes_a_page_at_a_time_and_points_to_the_whole_diffs(web: Web) -> None:
    order, [big_attempt] = [web.tickets[name] for name in ("big", "tries", "small")], attempts(web, "big")
    with Server(web.app) as server, httpx.Client(base_url=server.url, headers=web.headers("viewer")) as client:
        first = client.get("/api/review", params={"repo": "calc", "limit": 2})
        assert [t["id"] for t in first.json()] == order[:2] and len(first.content) < 20_000  # BIG is 400,000
        [big] = first.json()[0]["candidates"]
        assert not {"diff", "transcript", "prompt"} & big.keys() and big["diff_stat"]
        assert (big["diff_url"], big["transcript_url"]) == (
            f"/attempts/{big_attempt}/diff",
            f"/attempts/{big_attempt}/transcript",
        )
        assert client.get(big["diff_url"]).text == BIG and client.get(big["transcript_url"]).text == TRANSCRIPT
        assert client.get(f"/api/attempts/{big_attempt}").json()["diff"] == BIG  # one attempt, as JSON, whole
        following = f"/api/review?repo=calc&limit=2&after={order[1]}&priority=0"
        assert first.headers["link"] == f'<{following}>; rel="next"'  # the filters go with the next page
        last = client.get(following)
        assert [t["id"] for t in last.json()] == order[2:] and "link" not in last.headers
        assert client.get("/api/review", params={"agent": "nobody"}).json() == []
        assert [t["id"] for t in client.get("/api/review").json()] == order  # a page of 20 by default
        too_many = client.get("/api/review", params={"limit": 101})
        assert too_many.json() == {"detail": "limit: must be at most 100 (got '101')"}
        schema = client.get("/api/openapi.json").json()["paths"]["/api/review"]["get"]["parameters"]
        assert {p["name"]: p["schema"].get("default") for p in schema}["limit"] == 20


def test_the_api_tickets_list_names_its_next_page(web: Web) -> None:
    newest = sorted(web.tickets.values(), reverse=True)
    with Server(web.app) as server, httpx.Client(base_url=server.url, headers=web.headers("viewer")) as client:
        first = client.get("/api/tickets", params={"repo": "calc", "limit": 2})
        assert [t["id"] for t in first.json()] == newest[:2]
        assert first.headers["link"] == f'</api/tickets?repo=calc&limit=2&before={newest[1]}>; rel="next"'
        assert "link" not in client.get("/api/tickets", params={"limit": 3}).headers
