"""A running attempt's stored output reaches the ticket page and its event stream as text, never as markup."""

from __future__ import annotations

import json
from pathlib import Path

from db import queries
from db.lifecycle import AttemptStatus
from tests.web.conftest import add_sample_repo, make_fleet, make_tokens, queue, scripted_spec, settings_for

HOSTILE = "step 1 \x1b]0;owned\x07<script>alert(1)</script>\x1b[31mred\x1b[0m\n"
SHOWN = "step 1 <script>alert(1)</script>red\n"


def test_a_running_attempts_output_is_on_the_page_and_in_the_stream(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.events import TicketWatch

    fleet = make_fleet(tmp_path)
    app = create_app(settings_for(fleet), celery_dispatcher)
    add_sample_repo(fleet, app)
    [ticket] = queue(app, scripted_spec("add", "fix-add", "tests/test_calc.py::test_add fails"))
    db, lease = app.state.fleet.db, queries.Lease("test-worker", "token-1", 60.0)
    with db.session() as s:
        [attempt] = queries.open_attempts(s, ticket)
        attempt_id = attempt.id
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease)
        queries.store_live_transcripts(s, [(attempt_id, lease, HOSTILE)])

    watch = TicketWatch(app.state.fleet, ticket)
    events = [m for m in watch.poll() if m.startswith("event: transcript")]
    [data] = [json.loads(m.split("data: ", 1)[1]) for m in events]
    assert data == {"id": attempt_id, "text": SHOWN}
    assert [m for m in watch.poll() if "transcript" in m] == []  # nothing new, nothing sent

    client = TestClient(app, base_url="https://localhost")
    headers = {"Authorization": f"Bearer {make_tokens(app)['viewer']}"}
    html = client.get(f"/tickets/{ticket}/live", headers=headers).text
    assert f'data-transcript-of="{attempt_id}">step 1 &lt;script&gt;alert(1)&lt;/script&gt;red' in html
    assert "\x1b" not in html and "owned" not in html

    with db.session() as s:  # the attempt moved on: its output is no longer stored as live
        assert queries.advance(s, attempt_id, lease, AttemptStatus.VERIFY_QUEUED)
        queries.store_live_transcripts(s, [(attempt_id, lease, "late")])
    with db.session() as s:
        assert queries.get_attempt(s, attempt_id).transcript == HOSTILE
    assert [m for m in watch.poll() if "transcript" in m] == []
    db.dispose()
