"""Pages, the login session and its cookie, CSRF on form posts, SSE streams and /metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest

from db import dashboard
from tests.web.conftest import Web

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def login(web: Web, role: str) -> Any:
    client = web.client()
    form = client.get("/login").text
    answer = client.post(
        "/login", data={"token": web.tokens[role], "csrf": CSRF.search(form).group(1)}, follow_redirects=False
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    return client


def csrf_of(client: Any, path: str = "/") -> str:
    return CSRF.search(client.get(path).text).group(1)


def test_login_sets_a_strict_secure_httponly_session_cookie(web: Web) -> None:
    client = web.client()
    form = client.get("/login")
    assert "fleet_login_csrf" in form.headers["set-cookie"]
    csrf = CSRF.search(form.text).group(1)
    answer = client.post("/login", data={"token": web.tokens["viewer"], "csrf": csrf}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert "fleet_session=" in cookie
    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"))
    assert web.tokens["viewer"].split("_", 2)[2] not in cookie  # the cookie is a signed session, not the token
    assert client.get("/").status_code == 200


def test_login_refuses_bad_tokens_and_missing_csrf(web: Web) -> None:
    client = web.client()
    csrf = CSRF.search(client.get("/login").text).group(1)
    bad = client.post("/login", data={"token": "fleet_1_nope", "csrf": csrf}, follow_redirects=False)
    assert bad.headers["location"] == "/login?error=bad"
    assert "not valid" in client.get("/login?error=bad").text
    fresh = web.client()  # no login form fetched: no CSRF cookie to match
    answer = fresh.post("/login", data={"token": web.tokens["admin"], "csrf": "forged"}, follow_redirects=False)
    assert answer.headers["location"] == "/login?error=expired"


def test_form_posts_need_the_csrf_token(web: Web) -> None:
    client = login(web, "reviewer")
    tid = web.tickets["review_c"]
    for csrf in ("", "wrong"):
        answer = client.post(f"/tickets/{tid}/approve", data={"csrf": csrf})
        assert answer.status_code == 403 and "CSRF" in answer.text
    # The API accepts the session cookie only with the CSRF token in a header.
    assert client.post(f"/api/tickets/{tid}/reject", json={}).status_code == 403
    assert client.get("/api/me").json()["name"] == "reviewer1"


def test_approve_and_reject_buttons_do_what_the_cli_does(web: Web) -> None:
    client = login(web, "reviewer")
    approve, reject = web.tickets["review_c"], web.tickets["review_d"]
    page = client.get(f"/tickets/{approve}").text
    assert f'action="/tickets/{approve}/approve"' in page
    answer = client.post(f"/tickets/{approve}/approve", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.headers["location"] == f"/tickets/{approve}?done=approved"
    assert "Approved: the diff landed" in client.get(answer.headers["location"]).text
    answer = client.post(f"/tickets/{reject}/reject", data={"csrf": csrf_of(client), "feedback": "Keep it simpler."})
    assert answer.status_code == 200 and "new attempt with your feedback" in answer.text
    assert "Keep it simpler." in answer.text  # shown as the feedback the new attempt starts from
    conflict = client.post(f"/tickets/{approve}/approve", data={"csrf": csrf_of(client)})
    assert conflict.status_code == 409 and "not waiting for review" in conflict.text


def test_viewers_see_no_buttons_and_cannot_post(web: Web) -> None:
    client = login(web, "viewer")
    review = client.get("/review").text
    assert "Approve" not in review and "Reject" not in review
    answer = client.post(f"/tickets/{web.tickets['review_c']}/approve", data={"csrf": csrf_of(client)})
    assert answer.status_code == 403
    assert client.get("/tokens").status_code == 403
    assert 'href="/tokens"' not in client.get("/").text


def test_fleet_page_shows_figures_and_charts(web: Web) -> None:
    client = login(web, "viewer")
    page = client.get("/").text
    assert page.count("<svg") == 2 and "bar-pass" in page
    assert "Review backlog" in page and "Spend today" in page and "fleet.agents" in page
    assert "verified" in page and 'data-live-fleet="/events/fleet"' in page
    answer = client.get("/")
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'self' covers scripts
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"


def test_tickets_page_filters(web: Web) -> None:
    client = login(web, "viewer")
    rows = re.compile(r'<tr data-ticket="(\d+)">')
    everything = [int(i) for i in rows.findall(client.get("/tickets").text)]
    assert set(web.tickets.values()) <= set(everything)
    row = re.search(rf'<tr data-ticket="{web.tickets["failed"]}">.*?</tr>', client.get("/tickets").text, re.S).group(0)
    assert "run 1:" in row and 'title="attempt 1' in row  # each ticket with its runs and attempts
    cancelled = [int(i) for i in rows.findall(client.get("/tickets?status=cancelled").text)]
    assert web.tickets["failed"] not in cancelled
    assert rows.findall(client.get("/tickets?agent=nobody").text) == []
    assert rows.findall(client.get("/tickets?repo=calc&status=bogus").text)  # an unknown status filters nothing


def test_tickets_page_and_api_go_back_a_page_at_a_time(web: Web) -> None:
    client, h = login(web, "viewer"), web.headers("viewer")
    newest = [t["id"] for t in web.client().get("/api/tickets?limit=2", headers=h).json()]
    older = [t["id"] for t in web.client().get(f"/api/tickets?limit=2&before={newest[-1]}", headers=h).json()]
    assert len(newest) == 2 and older and max(older) < min(newest)
    rows = re.compile(r'<tr data-ticket="(\d+)">')
    page = client.get(f"/tickets?before={newest[-1]}").text
    assert [int(i) for i in rows.findall(page)] == sorted(set(web.tickets.values()) - set(newest), reverse=True)
    assert 'id="newest-page"' in page and 'id="older-page"' not in page  # fewer than a page left


def test_ticket_page_timeline(web: Web) -> None:
    client = login(web, "viewer")
    page = client.get(f"/tickets/{web.tickets['review_c']}").text
    assert "fixed" in page and "tests/test_calc.py::test_add" in page and "still passing" in page
    # The ticket names no test: every failure at the base is a target, and add's is the one the diff fixed.
    assert '<code>tests/test_calc.py::test_add</code> <span class="muted">(target)</span>' in page
    assert '<div class="review-diff hl mode-unified"' in page
    assert '<td class="code gi"><span class="sign">+</span>' in page
    assert '<span class="k">return</span> <span class="n">a</span> <span class="o">+</span>' in page  # highlighted
    assert "Transcript" in page
    failed = client.get(f"/tickets/{web.tickets['failed']}").text
    assert "Feedback (the run ended: no next attempt was made)" in failed  # not "sent": nothing was sent
    assert "Feedback sent to the next attempt" not in failed
    assert client.get("/tickets/999999").status_code == 404
    fragment = client.get(f"/tickets/{web.tickets['review_c']}/live").text
    assert "<html" not in fragment and "still passing" in fragment


def test_review_page_lists_only_tickets_waiting_for_review(web: Web) -> None:
    client = login(web, "reviewer")
    page = client.get("/review").text
    shown = {int(i) for i in re.findall(r'<article class="review" id="review-(\d+)">', page)}
    api = {t["id"] for t in client.get("/api/review").json()}
    assert shown == api
    assert web.tickets["failed"] not in shown and web.tickets["queued"] not in shown
    if shown:
        assert "Best: candidate 1: run 1, attempt 1" in page and "Reject candidate 1" in page


def test_tokens_page_shows_a_new_token_once(web: Web) -> None:
    client = login(web, "admin")
    answer = client.post("/tokens", data={"csrf": csrf_of(client, "/tokens"), "role": "viewer", "name": "page-made"})
    token = re.search(r"<pre>(fleet_\d+_[^<]+)</pre>", answer.text).group(1)
    assert answer.headers["cache-control"] == "no-store"
    assert token not in client.get("/tokens").text
    assert web.client().get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    token_id = token.split("_")[1]
    client.post(f"/tokens/{token_id}/revoke", data={"csrf": csrf_of(client, "/tokens")})
    assert web.client().get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_logout_and_revoking_end_the_session(web: Web) -> None:
    client = login(web, "viewer")
    answer = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sse_streams(web: Web) -> None:
    client, h = web.client(), web.headers("viewer")
    tid = web.tickets["review_c"]
    with client.stream("GET", f"/events/tickets/{tid}", headers=h) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert text.startswith("retry: 1000") and "event: ticket" in text and f'"id":{tid}' in text
    assert text.count("event: ticket") == 1  # nothing changed during the stream: one event only

    ids = ",".join(str(i) for i in web.tickets.values())
    with client.stream("GET", f"/events/tickets?ids={ids}&newest=1", headers=h) as stream:
        text = "".join(stream.iter_text())
    assert text.count("event: status") == len(web.tickets) and "event: new" in text
    with client.stream("GET", "/events/fleet", headers=h) as stream:
        assert "event: fleet" in "".join(stream.iter_text())
    assert client.get("/events/tickets?ids=1;drop", headers=h).status_code == 422


def test_the_fleet_pages_stream_reads_the_fleet_no_more_often_than_it_may_tell_of_a_change(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its fingerprint counts every ticket by status, and its event goes out at most every few seconds: read
    every poll (0.1 s here) through a 0.8 s stream, it was read eight times for one event."""
    reads: list[int] = []
    fingerprint = dashboard.fleet_fingerprint

    def counted(s: Any) -> Any:
        reads.append(1)
        return fingerprint(s)

    monkeypatch.setattr(dashboard, "fleet_fingerprint", counted)
    with web.client().stream("GET", "/events/fleet", headers=web.headers("viewer")) as stream:
        assert "event: fleet" in "".join(stream.iter_text())
    assert len(reads) <= 1  # none when another stream's answer of the last few seconds was still fresh


def test_metrics_in_prometheus_text_format(web: Web) -> None:
    answer = web.client().get("/metrics", headers=web.headers("viewer"))
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert re.search(r'^fleet_tickets\{status="needs_review"\} \d+$', text, re.M)
    assert re.search(r'^fleet_verifications_total\{verdict="passed"\} [1-9]\d*$', text, re.M)
    assert re.search(r'^fleet_queue_depth\{queue="fleet.agents"\} \d+$', text, re.M)
    assert "# TYPE fleet_agent_duration_seconds histogram" in text
    assert re.search(r'^fleet_verification_duration_seconds_bucket\{le="\+Inf"\} [1-9]\d*$', text, re.M)
    assert re.search(r"^fleet_cost_usd_total \S+$", text, re.M) and "fleet_attempts_running 0" in text
    for line in text.splitlines():  # every sample line is `name{labels} number`
        assert line.startswith("#") or re.fullmatch(
            r'[a-z_]+(\{[a-z]+="[^"]*"\})? [-+0-9.e]+|[a-z_]+\{le="[^"]+"\} \d+', line
        ), line


def test_ticket_text_is_escaped_everywhere(web: Web) -> None:
    client = web.client()
    title = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    created = client.post(
        "/api/tickets", json={"repo": "calc", "title": title, "agents": ["aider"]}, headers=web.headers("submitter")
    ).json()
    viewer = login(web, "viewer")
    for path in (f"/tickets/{created['id']}", "/tickets", f"/tickets/{created['id']}/live"):
        page = viewer.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(" in page, path
    client.post(f"/api/tickets/{created['id']}/cancel", headers=web.headers("submitter"))


def test_bar_chart_and_buckets() -> None:
    from datetime import timedelta

    from db.models import utcnow
    from orchestrator.web.figures import buckets
    from orchestrator.web.render import bar_chart

    now = utcnow()
    rows = [
        (now - timedelta(minutes=1), "passed"),
        (now - timedelta(minutes=2), "failed"),
        (now - timedelta(hours=2), "passed"),
    ]
    points = buckets(rows, now, timedelta(minutes=5), 12)
    assert [(b.total, b.passed) for b in points][-1] == (2, 1) and sum(b.total for b in points) == 2
    svg = str(bar_chart(points, "last hour", "5m", "-1h"))
    assert svg.startswith("<svg") and svg.count('class="bar-all"') == 12 and "2 verifications run, 1 passed" in svg


def test_cancel_and_retry_buttons_for_the_submitter_only(web: Web) -> None:
    api = web.client()
    created = api.post(
        "/api/tickets",
        json={"repo": "calc", "title": "to cancel", "agents": ["aider"]},
        headers=web.headers("submitter"),
    )
    tid = created.json()["id"]
    owner, stranger = login(web, "submitter"), login(web, "other")
    assert 'id="cancel"' in owner.get(f"/tickets/{tid}").text
    assert 'id="cancel"' not in stranger.get(f"/tickets/{tid}").text
    assert stranger.post(f"/tickets/{tid}/cancel", data={"csrf": csrf_of(stranger)}).status_code == 403
    assert owner.post(f"/tickets/{tid}/approve", data={"csrf": csrf_of(owner)}).status_code == 403  # not a reviewer
    answer = owner.post(f"/tickets/{tid}/cancel", data={"csrf": csrf_of(owner)}, follow_redirects=False)
    assert answer.headers["location"] == f"/tickets/{tid}?done=cancelled"
    page = owner.get(answer.headers["location"]).text
    assert 'id="ticket-status">cancelled<' in page and 'id="retry"' in page
    answer = owner.post(f"/tickets/{tid}/retry", data={"csrf": csrf_of(owner)}, follow_redirects=False)
    assert answer.headers["location"] == f"/tickets/{tid}?done=retried"
    assert 'id="ticket-status">queued<' in owner.get(f"/tickets/{tid}").text
    owner.post(f"/tickets/{tid}/cancel", data={"csrf": csrf_of(owner)})
