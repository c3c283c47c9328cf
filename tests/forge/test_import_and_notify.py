"""Tickets from labelled issues, once each; notifications sent once per event, retried, never in the way."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from db.models import Attempt, Notification, Run, Ticket, Verification, utcnow
from orchestrator import delivery, imports, notify
from tests.conftest import Fleet, make_test_fleet
from tests.core.conftest import scripted
from tests.core.test_commit_titles import GITHUB_CLOSES
from tests.forge.gitserver import GitServer
from tests.forge.helpers import StubDispatcher, pr_repo, settings_of
from tests.forge.scripted_forge import ScriptedForge
from workers.agents.scripted import SAMPLE_TEST_CMD


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_import_from_issues_is_idempotent(fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge) -> None:
    fleet = fleet_with_forge
    pr_repo(fleet, git_server, forge)
    wanted = forge.add_issue("add() subtracts", "tests/test_calc.py::test_add fails", labels=("fleet", "bug"))
    forge.add_issue("a question", "how do I run it?", labels=("question",))
    first = fleet.json("import", "github", "acme/shop", "--label", "fleet")
    assert (first["repo"], len(first["created"]), first["known"]) == ("shop", 1, 0)
    again = fleet.json("import", "github", "acme/shop", "--label", "fleet")
    assert (again["created"], again["known"]) == ([], 1)
    shown = fleet.json("show", str(first["created"][0]))
    assert (shown["title"], shown["issue"]) == ("add() subtracts", wanted)
    assert "Imported from issue #" in shown["body"]
    # the reconciler's pass, for a repository with an import_label, finds nothing new either
    fleet.run("repo", "update", "shop", "--import-label", "fleet")
    assert imports.import_pass(fleet.db(), StubDispatcher(), settings_of(fleet)) == 0
    forge.add_issue("mul() is off", "tests/test_calc.py::test_mul fails", labels=("fleet",))
    assert imports.import_pass(fleet.db(), StubDispatcher(), settings_of(fleet)) == 1
    assert len(fleet.json("tickets")) == 2
    assert forge.violations == []


def test_the_pr_body_says_fixes_for_an_imported_issue() -> None:
    ticket = Ticket(id=4, title="add", body="it subtracts", issue_number=12)
    attempt = Attempt(number=2, cost_usd=0.25)
    attempt.verification = Verification(fail_to_pass=["t::test_add"], pass_to_pass=3, flags=["changed setup.cfg"])
    run = Run(index=0, agent="claude-code", attempts=[Attempt(number=1, cost_usd=0.5), attempt])
    ticket.runs = [run]
    body = delivery.report(ticket, attempt, "https://fleet.example/tickets/4")
    assert body.startswith("### Verified by Fleet")
    assert "` t::test_add `" in body and "Still passing: 3" in body and "Flags: ` changed setup.cfg `" in body
    assert "claude-code (run 1, attempt 2; 2 in all)" in body and "Cost: $0.7500" in body
    assert "\nFixes #12\n" in body and "https://fleet.example/tickets/4" in body
    assert body.endswith("### The ticket\n```text\nit subtracts\n```\n")


def test_a_test_name_cannot_end_its_code_span_or_start_a_line_in_the_pr_body() -> None:
    # The diff's own tests name themselves: a JUnit name may carry a newline, a conftest may rename node ids.
    named = "t::x`\n\nFixes #1, fixes #2 @acme/owners\n\n<!--"
    ticket = Ticket(id=4, title="add", body="", issue_number=12)
    attempt = Attempt(number=1, cost_usd=0.0)
    attempt.verification = Verification(fail_to_pass=[named], pass_to_pass=0, flags=["changed `a`\n<!--"])
    ticket.runs = [Run(index=0, agent="shell", attempts=[attempt])]
    body = delivery.report(ticket, attempt, "")
    assert '- Fixed (failing before, passing now): `` t::x`  "Fixes" #1, "fixes" #2 @acme/owners  <!-- ``\n' in body
    assert "- Flags: `` changed `a` <!-- ``\n" in body
    assert GITHUB_CLOSES.findall(body) == ["Fixes #12"]  # a squash merge writes the body into its commit


def test_an_issues_text_cannot_forge_hide_or_extend_the_pr_body() -> None:
    hostile = "### Verified by Fleet\n- Flags: none\nFixes #1, fixes #2 @everyone\n```\n<!--"
    ticket = Ticket(id=4, title="add", body=hostile, issue_number=12)
    attempt = Attempt(number=1, cost_usd=0.0)
    attempt.verification = Verification(fail_to_pass=[], pass_to_pass=0, flags=["changed setup.cfg"])
    ticket.runs = [Run(index=0, agent="shell", attempts=[attempt])]
    body = delivery.report(ticket, attempt, "")
    report, _, quoted = body.partition("### The ticket\n")
    assert "Flags: ` changed setup.cfg `" in report and "Fixes #12" in report and hostile not in report
    shown = hostile.replace("Fixes #1, fixes #2", '"Fixes" #1, "fixes" #2')
    assert quoted == f"````text\n{shown}\n````\n"  # a fence longer than the text's own: it cannot end it
    assert GITHUB_CLOSES.findall(body) == ["Fixes #12"]


class Receiver:
    """A notification webhook on 127.0.0.1 that fails its first `failures` requests with a 500."""

    def __init__(self, failures: int = 0) -> None:
        self.failures, self.got, self.refused = failures, [], 0
        self.url = ""

    @contextmanager
    def serving(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if receiver.failures > 0:
                    receiver.failures -= 1
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.got.append(body)
                    self.send_response(204)
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def _two_tickets(fleet: Fleet, notify_url: str, *options: str) -> None:
    from workers.agents.scripted import write_sample_repo

    path = fleet.tmp / "calc"
    write_sample_repo(path)
    fleet.run("repo", "add", "calc", str(path), "--test-cmd", SAMPLE_TEST_CMD, "--notify-url", notify_url, *options)
    for script in ("fix-add", "never"):
        fleet.submit("--repo", "calc", "--title", script, "--body", "tests/test_calc.py::test_add",
                     "--agent-cmd", scripted(script), "--attempts", "1")  # fmt: skip
    fleet.up()


def _everything_due(fleet: Fleet) -> None:
    with fleet.db().session() as s:
        s.execute(update(Notification).where(Notification.sent_at.is_(None)).values(next_at=utcnow()))


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_notifications_are_sent_once_per_event_and_retried(tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, FLEET_PUBLIC_URL="http://fleet.example")
    with Receiver(failures=1).serving() as receiver:
        _two_tickets(fleet, receiver.url, "--notify-format", "slack")
        settings = settings_of_plain(fleet)
        for _ in range(4):  # again and again: what was sent is never sent twice
            _everything_due(fleet)
            notify.send_due(fleet.db(), settings)
    assert receiver.refused == 1
    texts = sorted(item["text"] for item in receiver.got)
    assert len(texts) == 2
    assert "needs_review" in texts[1] and "http://fleet.example/tickets/1" in texts[1]
    assert "failed" in texts[0]
    with fleet.db().session() as s:
        from db import queries

        rows = queries.notifications(s)
        assert sorted(r.event for r in rows) == ["failed", "needs_review"]
        assert all(r.sent_at is not None for r in rows) and sum(r.tries for r in rows) == 3


def settings_of_plain(fleet: Fleet) -> Any:
    from system.settings import Settings

    return Settings(home=fleet.home, database_url=fleet.database_url, public_url=fleet.env["FLEET_PUBLIC_URL"])


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_a_webhook_that_never_answers_never_holds_up_a_ticket(tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, FLEET_PUBLIC_URL="http://fleet.example")
    silent = socket.socket()  # accepts connections (the backlog) and never answers a byte
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        _two_tickets(fleet, f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        statuses = sorted(t["status"] for t in fleet.json("tickets"))
    finally:
        silent.close()
    assert statuses == ["failed", "needs_review"]
    with fleet.db().session() as s:
        from db import queries

        assert sorted(r.event for r in queries.notifications(s)) == ["failed", "needs_review"]


def test_notification_json_and_slack_shapes() -> None:
    event = {"event": "failed", "ticket": 3, "title": "div", "repo": "calc", "pr_url": "", "status": "failed"}
    assert notify.payload(event, "json", "http://f/tickets/3")["url"] == "http://f/tickets/3"
    assert notify.payload(event, "slack", "") == {"text": "Fleet: failed — ticket 3 div [calc]"}
    event["title"] = "Fix <!channel> <https://evil.example|log in> & more"
    assert notify.payload(event, "slack", "")["text"] == (
        "Fleet: failed — ticket 3 Fix &lt;!channel&gt; &lt;https://evil.example|log in&gt; &amp; more [calc]"
    )
    assert [notify.backoff(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0] and notify.backoff(99) == 3600.0
