"""The merge queue's control-plane side on SQLite and PostgreSQL: enqueue, refusals, the status view, overlaps,
eject, and the fenced writes of a build (a duplicate claim, a zombie's verdict after a reset)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from db import lifecycle, mergeplan, queries
from db.engine import Database
from db.lifecycle import AttemptStatus, IllegalTransition, MergeStatus, TicketStatus, Verdict
from db.migrate import upgrade
from orchestrator import merges, review
from orchestrator.errors import FleetError
from system.settings import Settings
from tests.conftest import Fleet
from tests.forge.helpers import StubDispatcher
from workers import merge_queue


def diff(path: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def reviewable(db: Database, title: str, path: str, area: tuple[str, ...] = (), repo_name: str = "shop") -> int:
    """A ticket waiting for review with one verified diff touching path."""
    with db.session() as s:
        repo = next((r for r in queries.list_repos(s) if r.name == repo_name), None)
        repo = repo or queries.add_repo(s, name=repo_name, source=f"/nowhere/{repo_name}", test_cmd="true")
        ticket = queries.add_ticket(s, ["shell"], repo_id=repo.id, title=title, base_ref="main",
                                    base_sha="0" * 40, agent="shell", area=list(area))  # fmt: skip
        attempt = queries.add_attempt(s, ticket.runs[0], "prompt")
        attempt.diff = diff(path)
        lifecycle.move(attempt, AttemptStatus.RUNNING)
        lifecycle.move(attempt, AttemptStatus.FINISHED)
        queries.add_verification(s, attempt.id, verdict=Verdict.PASSED.value)
        queries.set_ticket_status(s, ticket, TicketStatus.RUNNING)
        queries.set_ticket_status(s, ticket, TicketStatus.NEEDS_REVIEW)
        return ticket.id


def test_enqueue_approves_a_ticket_in_review_and_refuses_twice_and_the_unverified(db: Database) -> None:
    one = reviewable(db, "one", "a.py")
    with db.session() as s:
        entry = merges.enqueue(s, one, "ann")
        assert (entry.target, entry.files, entry.status) == ("main", ["a.py"], "waiting")
        assert queries.get_ticket(s, one).status == TicketStatus.APPROVED.value
    with db.session() as s, pytest.raises(FleetError, match=f"^ticket {one} is already in the merge queue$"):
        merges.enqueue(s, one, "ann")
    with db.session() as s:
        repo = queries.list_repos(s)[0]
        other = queries.add_ticket(s, ["shell"], repo_id=repo.id, title="x", base_ref="main", base_sha="0" * 40,
                                   agent="shell")  # fmt: skip
        other_id = other.id
    with db.session() as s, pytest.raises(Exception, match="only approved tickets and those waiting for review"):
        merges.enqueue(s, other_id, "ann")


def test_status_flags_overlaps_by_file_and_area_and_orders_independent_ones_first(db: Database) -> None:
    a, b = reviewable(db, "a", "shared.py"), reviewable(db, "b", "shared.py")
    c, d = reviewable(db, "c", "own.py"), reviewable(db, "d", "docs/x.md", area=("own*",))
    with db.session() as s:
        for ticket in (a, b, c, d):
            merges.enqueue(s, ticket, "ann")
    with db.session() as s:
        view = merges.queue_view(s)
    rows = {r["ticket"]: r for r in view["queue"]}
    assert rows[a]["overlaps"] == [b] and rows[c]["overlaps"] == [d] and rows[d]["overlaps"] == [c]
    assert [r["ticket"] for r in view["queue"]] == [a, c, b, d]  # b and d overlap one ahead: they go after
    e = reviewable(db, "e", "shared.py")
    with db.session() as s:
        rows_in_review = [{"id": e, "candidates": [{"diff": diff("shared.py")}]}]
        assert merges.review_overlaps(s, rows_in_review) == {e: [a, b]}


def test_overlaps_are_within_one_repository(db: Database) -> None:
    """Two repositories that both have calc.py share no file: neither the review list nor the queue flags them."""
    shop_queued, calc_queued = reviewable(db, "a", "calc.py"), reviewable(db, "b", "calc.py", repo_name="calc")
    with db.session() as s:
        merges.enqueue(s, shop_queued, "ann")
        merges.enqueue(s, calc_queued, "ann")
    shop_waiting, calc_waiting = reviewable(db, "c", "calc.py"), reviewable(db, "d", "calc.py", repo_name="calc")
    rows_in_review = [{"id": t, "candidates": [{"diff": diff("calc.py")}]} for t in (shop_waiting, calc_waiting)]
    with db.session() as s:
        found = merges.review_overlaps(s, rows_in_review)
        queue = merges.queue_view(s)["queue"]
    assert found == {shop_waiting: [shop_queued], calc_waiting: [calc_queued]}
    assert [r["overlaps"] for r in queue] == [[], []]


def test_eject_leaves_the_ticket_approved_and_a_zombie_build_cannot_write_its_verdict(db: Database) -> None:
    one = reviewable(db, "one", "a.py")
    with db.session() as s:
        entry = merges.enqueue(s, one, "ann")
        lifecycle.move(entry, MergeStatus.BUILDING)
        entry.build_sha, entry_id = "b" * 40, entry.id
    with db.session() as s:
        entry = queries.get_entry(s, entry_id)
        assert entry is not None
        repo_id = entry.repo_id
        assert queries.claim_build(s, entry, "b" * 40, "t1", 60)
        assert not queries.claim_build(s, entry, "b" * 40, "t2", 60)  # a duplicate message
        merges.eject(s, one, "bob")
    with db.session() as s:
        assert not queries.finish_build(s, (repo_id, entry_id, "b" * 40), "t1", MergeStatus.PASSED)
        entry = queries.get_entry(s, entry_id)
        assert entry is not None and (entry.status, entry.reason) == ("ejected", "removed by bob")
        assert queries.get_ticket(s, one).status == TicketStatus.APPROVED.value
    with db.session() as s, pytest.raises(FleetError, match=f"^ticket {one} is not in the merge queue$"):
        merges.eject(s, one, "bob")


def test_a_verdict_written_during_a_pass_that_rebuilds_the_entry_is_refused(db: Database) -> None:
    """A pass writes only the columns it changed: a verdict landing between its read and its write would leave the
    rebuilt entry `failed` with the old build's failures (an innocent entry ejected). The queue's lock orders them."""
    one = reviewable(db, "one", "a.py")
    with db.session() as s:
        entry = merges.enqueue(s, one, "ann")
        lifecycle.move(entry, MergeStatus.BUILDING)
        entry.build_sha, entry.parent_sha, entry_id, repo_id = "b" * 40, "p" * 40, entry.id, entry.repo_id
    with db.session() as s:
        entry = queries.get_entry(s, entry_id)
        assert entry is not None and queries.claim_build(s, entry, "b" * 40, "old", 60)
    trying = threading.Event()

    def old_build_fails() -> None:
        with db.session() as s:
            trying.set()
            queries.finish_build(s, (repo_id, entry_id, "b" * 40), "old", MergeStatus.FAILED, failures=["t.py"])

    with db.session() as s:
        queries.merge_lock(s, repo_id)
        entry = queries.get_entry(s, entry_id)
        assert entry is not None
        verdict = threading.Thread(target=old_build_fails)
        verdict.start()
        trying.wait(10)
        time.sleep(0.3)  # the old verdict's write, unordered, would land here, between the pass's read and write
        plan = mergeplan.Plan(resets=[entry_id], builds={entry_id: mergeplan.Build("q" * 40, "c" * 40, ())})
        merge_queue._write(s, plan, {entry_id: entry}, merge_queue.Sends())
    verdict.join(30)
    with db.session() as s:
        entry = queries.get_entry(s, entry_id)
        assert entry is not None
        assert (entry.status, entry.build_sha, entry.failures) == ("building", "c" * 40, [])


def test_the_merge_commands(embedded: Fleet) -> None:
    db = embedded.db()
    upgrade(db)
    a, b = reviewable(db, "Raise the limit", "shared.py"), reviewable(db, "Lower it", "shared.py")
    c = reviewable(db, "Elsewhere", "own.py")
    assert "queued to land on main" in embedded.run("merge", "enqueue", str(a)).stdout
    review = embedded.json("review", "list")
    assert {r["id"]: r["overlaps"] for r in review} == {b: [a], c: []}
    embedded.run("merge", "enqueue", str(b))
    shown = embedded.run("merge", "status").stdout
    assert "Raise the limit" in shown and "Lower it" in shown and "waiting" in shown
    assert [r["ticket"] for r in embedded.json("merge", "status")["queue"]] == [a, b]
    assert embedded.run("merge", "enqueue", str(a), check=False).stderr == (
        f"error: ticket {a} is already in the merge queue\n"
    )
    assert "left the merge queue" in embedded.run("merge", "eject", str(b)).stdout
    assert f"ticket {b} ejected: removed by tester" in embedded.run("merge", "status").stdout


def test_a_rejection_racing_an_approval_into_the_queue_is_refused(db: Database, tmp_path: Path) -> None:
    """On PostgreSQL both read `needs_review` and both wrote: the rejected diff stayed in the merge queue, to land,
    while its run had a new attempt. The second decision now waits for the first and is refused."""
    one = reviewable(db, "one", "a.py")
    enqueued, release = threading.Event(), threading.Event()

    def approve_into_the_queue() -> None:
        with db.session() as s:
            merges.enqueue(s, one, "ann")
            enqueued.set()
            release.wait(10)  # the approval's transaction is still open when the rejection reads the ticket

    approving = threading.Thread(target=approve_into_the_queue)
    approving.start()
    assert enqueued.wait(10)
    outcome: list[BaseException | None] = []

    def reject() -> None:
        try:
            review.reject(db, StubDispatcher(), Settings(home=tmp_path), one, "bob", "")
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    rejecting = threading.Thread(target=reject)
    rejecting.start()
    time.sleep(0.5)
    release.set()
    approving.join(10)
    rejecting.join(10)
    assert outcome and isinstance(outcome[0], IllegalTransition), outcome
    assert str(outcome[0]) == f"ticket {one} is approved, not waiting for review"
    with db.session() as s:
        assert queries.get_ticket(s, one).status == TicketStatus.APPROVED.value
        assert [e.status for e in queries.ticket_entries(s, one)] == ["waiting"]
