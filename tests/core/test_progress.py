"""`fleet up`'s progress: counted from two snapshots of the database, one line rewritten in place in a terminal."""

from __future__ import annotations

import io
import time
from pathlib import Path

from db.engine import Database
from db.migrate import upgrade
from fleet.cli.progress import Progress, Reporter, Snapshot, progress, shown_url, summary


def test_progress_counts_the_tickets_open_at_the_start_and_those_submitted_since() -> None:
    start = Snapshot({"queued": 3, "needs_review": 5, "failed": 1}, busy=0, spend=2.0)
    now = Snapshot({"queued": 1, "running": 1, "needs_review": 6, "failed": 2, "approved": 0}, busy=2, spend=2.5)
    # 3 open at the start + 1 submitted since = 4; 2 still open; the pace so far (2 in 60 s) says 60 s more.
    assert progress(start, now, elapsed=60.0) == Progress(
        done=2, total=4, running=2, verified=1, failed=1, errored=0, cancelled=0, spend=0.5, eta_seconds=60.0
    )
    assert progress(start, start, elapsed=5.0).eta_seconds is None  # nothing done yet: no guess
    line = progress(start, now, 60.0).line()
    assert (
        line == "tickets 2/4 done · 2 attempts at work · 1 verified · 1 failed · 0 errored · $0.50 · about 1m00s left"
    )


def test_a_url_is_shown_without_its_password() -> None:
    assert (
        shown_url("postgresql+psycopg://fleet:hunter2@db:5432/fleet") == "postgresql+psycopg://fleet:***@db:5432/fleet"
    )
    assert shown_url("sqlite:////home/u/fleet.db") == "sqlite:////home/u/fleet.db"


def test_every_url_in_a_text_is_shown_without_its_password() -> None:
    """git's and Fleet's own words about a remote an older Fleet stored with a token: the token never shows."""
    said = "could not push to https://x:p@ss@w0rd@git.example/a.git: fatal: 'ssh://bob:tok@h:22/r' and git@h:o/r.git"
    assert shown_url(said) == (
        "could not push to https://x:***@git.example/a.git: fatal: 'ssh://bob:***@h:22/r' and git@h:o/r.git"
    )
    assert (
        shown_url("https://user@host:443/r.git and http://host:80/a@b")
        == "https://user@host:443/r.git and http://host:80/a@b"
    )


class Terminal(io.StringIO):
    """What `fleet up` writes to when its output is a terminal."""

    def isatty(self) -> bool:
        return True


def test_in_a_terminal_the_progress_line_is_rewritten_in_place(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    screen = Terminal()
    reporter = Reporter(db, screen, interval=0.05)
    reporter.thread.start()
    time.sleep(0.3)
    summary = reporter.finish()
    db.dispose()
    written = screen.getvalue()
    assert written.count("\r\x1b[Ktickets 0/0 done") >= 2 and "\n" not in written
    assert written.endswith("\r\x1b[K")  # the live line is cleared before the summary
    assert summary[0].startswith("done in 0s: tickets 0/0 done")


def test_the_first_line_shows_the_counts_at_the_start_before_any_work_is_done(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    log = io.StringIO()
    reporter = Reporter(db, log, interval=3600.0)  # no second poll within the test
    reporter.thread.start()
    reporter.finish()
    db.dispose()
    assert log.getvalue() == "tickets 0/0 done · 0 attempts at work · 0 verified · 0 failed · 0 errored · $0.00\n"


def test_an_error_is_counted_apart_from_a_failure_with_the_listing_that_shows_it() -> None:
    start = Snapshot({"queued": 2}, busy=0, spend=0.0)
    ended = progress(start, Snapshot({"failed": 1, "error": 1}, busy=0, spend=0.0), elapsed=5.0)
    assert (ended.failed, ended.errored) == (1, 1)
    lines = summary(ended, 5.0)
    assert "next: `fleet tickets --status failed`, then `fleet show ID` for the feedback of each attempt" in lines
    assert "next: `fleet tickets --status error`, then `fleet show ID` for what broke (not the agent's doing)" in lines


def test_counts_read_as_people_write_them_and_a_cancelled_ticket_is_counted() -> None:
    start = Snapshot({"queued": 3}, busy=0, spend=0.0)
    ended = progress(start, Snapshot({"running": 1, "needs_review": 1, "cancelled": 1}, busy=1, spend=0.0), 5.0)
    assert ended.line() == (
        "tickets 2/3 done · 1 attempt at work · 1 verified · 0 failed · 0 errored · 1 cancelled · $0.00 · about 2s left"
    )
    lines = summary(ended, 5.0, handed_back=2)
    assert "next: `fleet review list` (1 verified diff waiting for review)" in lines
    assert "2 attempts went back in line, no verdict: run `fleet up` to resume" in lines
    assert not any("went back" in line for line in summary(ended, 5.0))


def test_in_a_terminal_a_line_said_stands_above_the_live_line_not_at_its_end(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    screen = Terminal()
    reporter = Reporter(db, screen, interval=3600.0)  # the first line only, then what is said
    reporter.thread.start()
    wait = time.monotonic() + 10
    while not screen.getvalue() and time.monotonic() < wait:
        time.sleep(0.01)
    reporter.say("stopping: no new work")
    reporter.finish()
    db.dispose()
    live = "tickets 0/0 done · 0 attempts at work · 0 verified · 0 failed · 0 errored · $0.00"
    assert screen.getvalue() == f"\r\x1b[K{live}\r\x1b[Kstopping: no new work\n{live}\r\x1b[K"
