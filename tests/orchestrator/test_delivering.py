"""An approval that pushes holds its ticket: on SQLite and PostgreSQL, a rejection (or any other decision) made
while the push runs is refused in one line, a failed push gives the ticket back at once, and the claim of an
approval whose process died lapses. A password an older Fleet stored in a remote's URL shows nowhere."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command

from db import lifecycle, queries
from db.engine import Database
from db.lifecycle import AttemptStatus, TicketStatus, Verdict
from db.migrate import HEAD, alembic_config, current_revision, upgrade
from db.models import utcnow
from orchestrator import merges, review
from orchestrator.errors import FleetError
from system.settings import Settings
from tests.forge.helpers import StubDispatcher

DIFF = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n"
PASSWORD = "hunter2-s3cret"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "H", "GIT_AUTHOR_EMAIL": "h@example.com", "GIT_COMMITTER_NAME": "H",
           "GIT_COMMITTER_EMAIL": "h@example.com", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def shop(tmp: Path) -> tuple[Path, str]:
    """A repository folder with one commit, and that commit."""
    work = tmp / "shop"
    work.mkdir()
    (work / "a.py").write_text("A = 1\n")
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "the shop", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work).strip()


def remote(tmp: Path, work: Path, hook: str) -> Path:
    """A bare clone of work whose pre-receive hook runs `hook` (a shell script's body)."""
    bare = tmp / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp)
    script = bare / "hooks" / "pre-receive"
    script.write_text("#!/bin/sh\n" + hook)
    script.chmod(0o755)
    return bare


def blocking_remote(tmp: Path, work: Path) -> tuple[Path, Path, Path]:
    """A remote whose push waits until `release` exists, having made `started`: a push seconds over a network."""
    started, release = tmp / "started", tmp / "release"
    wait = f'touch "{started}"\ni=0\nwhile [ ! -e "{release}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n'
    return remote(tmp, work, wait), started, release


def reviewable(db: Database, source: Path, base_sha: str, push_to: str, name: str = "shop") -> int:
    """A ticket waiting for review with one verified diff, its repository delivering by push to `push_to` (stored as
    is, as an older Fleet stored a URL with a password)."""
    with db.session() as s:
        repo = queries.add_repo(
            s, name=name, source=str(source), test_cmd="true", settings={"deliver": "push", "remote": push_to}
        )
        ticket = queries.add_ticket(s, ["shell"], repo_id=repo.id, title="A is 2", base_ref="main",
                                    base_sha=base_sha, agent="shell")  # fmt: skip
        attempt = queries.add_attempt(s, ticket.runs[0], "prompt")
        attempt.diff = DIFF
        lifecycle.move(attempt, AttemptStatus.RUNNING)
        lifecycle.move(attempt, AttemptStatus.FINISHED)
        queries.add_verification(s, attempt.id, verdict=Verdict.PASSED.value)
        queries.set_ticket_status(s, ticket, TicketStatus.RUNNING)
        queries.set_ticket_status(s, ticket, TicketStatus.NEEDS_REVIEW)
        return ticket.id


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def decisions_while_delivering(db: Database, settings: Settings, ticket: int) -> dict[str, str]:
    """What every other decision on the ticket answers while its approval pushes."""
    dispatcher = StubDispatcher()
    calls = {
        "reject": lambda: review.reject(db, dispatcher, settings, ticket, "bob", "use three, not two"),
        "approve": lambda: review.approve(db, settings, ticket, "carol"),
        "retry": lambda: review.retry(db, dispatcher, settings, ticket, "dan"),
        "cancel": lambda: review.cancel(db, ticket, "erin"),
    }
    answers = {}
    for name, call in calls.items():
        with pytest.raises(FleetError) as refused:
            call()
        answers[name] = str(refused.value)
    with db.session() as s, pytest.raises(FleetError) as refused:
        merges.enqueue(s, ticket, "fay", target="main")
    return answers | {"enqueue": str(refused.value)}


def test_a_rejection_while_an_approval_pushes_is_refused_and_the_approval_stands(db: Database, tmp_path: Path) -> None:
    """The approval read the ticket, pushed for seconds outside any transaction, then wrote `approved`: a rejection
    with feedback in that window reopened the run, and the approval wrote over it. The diff was delivered and an
    agent worked on the ticket again."""
    work, base = shop(tmp_path)
    bare, started, release = blocking_remote(tmp_path, work)
    ticket = reviewable(db, work, base, str(bare))
    settings = Settings(home=tmp_path / "home")
    thread, outcome = approving(db, settings, ticket)
    try:
        wait_for_file(started)
        answers = decisions_while_delivering(db, settings, ticket)
    finally:
        release.touch()
        thread.join(60)
    line = f"ticket {ticket} is being delivered by ann; try again in a few seconds"
    assert answers == dict.fromkeys(["reject", "approve", "retry", "cancel", "enqueue"], line)
    [decision] = outcome
    assert isinstance(decision, review.Decision) and decision.status == TicketStatus.APPROVED, decision
    with db.session() as s:
        found = queries.load_ticket_tree(s, ticket)
        assert (found.status, found.delivering_by, found.delivering_until) == ("approved", None, None)
        assert [a.status for a in found.runs[0].attempts] == ["finished"]  # no agent at work again
        assert [r.decision for r in queries.ticket_reviews(s, ticket)] == ["approved"]
        assert not queries.ticket_entries(s, ticket)
    assert git("rev-parse", f"fleet/ticket-{ticket}", cwd=bare).strip() == decision.commit


def approving(db: Database, settings: Settings, ticket: int) -> tuple[threading.Thread, list[object]]:
    """An approval in a thread of its own, and what it returns or raises once it ends."""
    return in_thread(lambda: review.approve(db, settings, ticket, "ann"))


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """call in a thread of its own, and what it returns or raises once it ends."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_the_claim_lasts_as_long_as_the_push_and_a_lapsed_one_is_not_written_over(db: Database, tmp_path: Path) -> None:
    """Renewed every heartbeat, a claim outlives its first lease; not renewed (the approval's process is cut off
    from the database), it lapses, a rejection is let in, and the approval that ends later leaves it standing."""
    work, base = shop(tmp_path)
    bare, started, release = blocking_remote(tmp_path, work)
    ticket = reviewable(db, work, base, str(bare))
    renewed = Settings(home=tmp_path / "home", lease_seconds=1.0, heartbeat_seconds=0.2)
    thread, outcome = approving(db, renewed, ticket)
    try:
        wait_for_file(started)
        time.sleep(2.0)  # twice the lease
        with pytest.raises(FleetError, match="is being delivered by ann"):
            review.reject(db, StubDispatcher(), renewed, ticket, "bob", "")
    finally:
        release.touch()
        thread.join(60)
    assert isinstance(outcome[0], review.Decision) and outcome[0].status == TicketStatus.APPROVED
    started.unlink()
    release.unlink()
    ticket = reviewable(db, work, base, str(bare), name="shop2")
    cut_off = Settings(home=tmp_path / "home", lease_seconds=0.5, heartbeat_seconds=3600)
    thread, outcome = approving(db, cut_off, ticket)
    try:
        wait_for_file(started)
        time.sleep(1.0)
        assert review.reject(db, StubDispatcher(), cut_off, ticket, "bob", "").status == TicketStatus.REJECTED
    finally:
        release.touch()
        thread.join(60)
    [refused] = outcome
    assert isinstance(refused, FleetError)
    assert str(refused).endswith("but its claim lapsed and it is rejected now") and "pushed to" in str(refused)
    with db.session() as s:
        assert queries.get_ticket(s, ticket).status == "rejected"
        assert [r.decision for r in queries.ticket_reviews(s, ticket)] == ["rejected"]


def test_a_failed_push_gives_the_ticket_back_for_review_at_once(db: Database, tmp_path: Path) -> None:
    work, base = shop(tmp_path)
    bare = remote(tmp_path, work, "echo 'pushes are closed today' >&2\nexit 1\n")
    ticket = reviewable(db, work, base, str(bare))
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(FleetError, match="pushes are closed today"):
        review.approve(db, settings, ticket, "ann")
    with db.session() as s:
        found = queries.get_ticket(s, ticket)
        assert (found.status, found.delivering_by, found.delivering_until) == ("needs_review", None, None)
    rejected = review.reject(db, StubDispatcher(), settings, ticket, "bob", "")
    assert rejected.status == TicketStatus.REJECTED


def test_the_claim_of_an_approval_whose_process_died_lapses(db: Database, tmp_path: Path) -> None:
    work, base = shop(tmp_path)
    ticket = reviewable(db, work, base, str(tmp_path / "nowhere.git"))
    settings = Settings(home=tmp_path / "home")

    def claimed(until: timedelta) -> None:
        with db.session() as s:
            found = queries.get_ticket(s, ticket)
            found.delivering_by, found.delivering_token, found.delivering_until = "ann", "gone", utcnow() + until

    claimed(timedelta(seconds=30))
    with pytest.raises(FleetError, match=f"^ticket {ticket} is being delivered by ann; try again in a few seconds$"):
        review.reject(db, StubDispatcher(), settings, ticket, "bob", "")
    claimed(-timedelta(seconds=1))  # the approving process stopped renewing it
    assert review.reject(db, StubDispatcher(), settings, ticket, "bob", "").status == TicketStatus.REJECTED


def test_a_password_an_older_version_stored_in_the_remote_shows_nowhere(db: Database, tmp_path: Path) -> None:
    """New remotes with a password are refused (CredentialFreeUrl); one stored before that still reached the push
    error, word for word."""
    work, base = shop(tmp_path)
    ticket = reviewable(db, work, base, f"http://ann:{PASSWORD}@127.0.0.1:1/shop.git")
    with pytest.raises(FleetError) as failed:
        review.approve(db, Settings(home=tmp_path / "home"), ticket, "ann")
    assert "could not push" in str(failed.value) and "http://ann:***@127.0.0.1:1/shop.git" in str(failed.value)
    with db.session() as s:
        found = queries.get_ticket(s, ticket)
        shown = [found.status_reason] + [e.message for e in queries.ticket_events(s, ticket)]
    assert found.status == "needs_review" and not [text for text in shown if PASSWORD in text]
    assert PASSWORD not in str(failed.value)


def test_the_migration_keeps_the_rows_there_and_starts_them_unclaimed(db: Database, tmp_path: Path) -> None:
    """0016 adds the claim to every ticket and the refusal to every merge entry already there, empty: each is
    reviewable and counted as the queue's work as before; and it comes off again."""
    ticket = reviewable(db, tmp_path, "0" * 40, "")
    queued = reviewable(db, tmp_path, "0" * 40, "", name="queued")
    with db.session() as s:
        merges.enqueue(s, queued, "ann", target="main")
    command.downgrade(alembic_config(db), "0015")
    assert current_revision(db) == "0015"
    command.upgrade(alembic_config(db), "head")
    assert current_revision(db) == HEAD
    with db.session() as s:
        found = queries.get_ticket(s, ticket)
        assert (found.status, found.delivering_by, found.delivering_token, found.delivering_until) == (
            "needs_review", None, None, None,
        )  # fmt: skip
        assert [e.refused_at for e in queries.ticket_entries(s, queued)] == [None]
        assert queries.count_merge_work(s) == 1
    assert review.reject(db, StubDispatcher(), Settings(home=tmp_path), ticket, "bob", "").status == "rejected"
