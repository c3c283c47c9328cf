"""The Merge queue page and `/api/merge`: the live entries in landing order with their overlaps, and the entries
that left the queue, for viewers; what `fleet merge status --json` prints."""

from __future__ import annotations

from pathlib import Path

from db import lifecycle, queries
from db.lifecycle import MergeStatus
from orchestrator import merges
from tests.orchestrator.test_merges import reviewable
from tests.web.conftest import make_fleet, make_tokens, settings_for


def test_the_merge_queue_page_lists_entries_in_landing_order_with_overlaps(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path)
    app = create_app(settings_for(fleet), celery_dispatcher)
    db = app.state.fleet.db
    shared, other, own, gone = (reviewable(db, t, p) for t, p in
                                [("<b>limit</b> two", "shared.py"), ("limit three", "shared.py"),
                                 ("own module", "own.py"), ("landed", "done.py")])  # fmt: skip
    with db.session() as s:
        for ticket in (shared, other, own, gone):
            merges.enqueue(s, ticket, "ann")
        landed = queries.ticket_entries(s, gone)[0]
        for status in (MergeStatus.BUILDING, MergeStatus.PASSED, MergeStatus.MERGED):
            lifecycle.move(landed, status)
        landed.build_sha = landed.merged_sha = "c0ffee" * 6 + "abcd"
    client = TestClient(app, base_url="https://localhost")
    assert client.get("/merge", follow_redirects=False).status_code in (303, 401)
    headers = {"Authorization": f"Bearer {make_tokens(app)['viewer']}"}
    page = client.get("/merge", headers=headers).text
    rows = [page.index(f">#{t} ") for t in (shared, own, other)]
    assert rows == sorted(rows)  # the independent entry goes before the one overlapping an entry ahead of it
    assert f'<a href="/tickets/{other}">#{other}</a>' in page and f'<a href="/tickets/{shared}">#{shared}</a>' in page
    assert "&lt;b&gt;limit&lt;/b&gt; two" in page and "<b>limit</b>" not in page
    assert 'id="left-' in page and "c0ffeec0ffee" in page and ">merged<" in page
    api = client.get("/api/merge", headers=headers).json()
    with db.session() as s:
        assert api == merges.queue_view(s)
    assert [e["ticket"] for e in api["queue"]] == [shared, own, other]
    assert [e["ticket"] for e in api["recent"]] == [gone]
    db.dispose()
