"""What `fleet up` tells the user: a banner, a live progress line, and a summary with what to run next."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from db import queries
from db.engine import Database
from db.lifecycle import ACTIVE_TICKET, LEASED_ATTEMPT, TicketStatus
from orchestrator.views import plural
from system.credentials import shown_url
from system.settings import Settings

VERIFIED = (TicketStatus.NEEDS_REVIEW, TicketStatus.APPROVED)
PLAIN_EVERY_SECONDS = 10.0  # without a terminal, a line when something changed, and at least this often


@dataclass(frozen=True)
class Snapshot:
    """What the database says at one moment: tickets by status, attempts at work, dollars spent in all."""

    tickets: dict[str, int]
    busy: int
    spend: float

    def count(self, statuses: tuple[str, ...]) -> int:
        return sum(self.tickets.get(status, 0) for status in statuses)


def snapshot(db: Database) -> Snapshot:
    with db.reading() as conn:
        attempts = queries.attempt_counts(conn)
        return Snapshot(
            queries.ticket_counts(conn), sum(attempts.get(a, 0) for a in LEASED_ATTEMPT), queries.spend(conn)
        )


@dataclass(frozen=True)
class Progress:
    """The tickets this `fleet up` has to finish: those open when it started, and those submitted since."""

    done: int
    total: int
    running: int
    verified: int
    failed: int
    errored: int
    cancelled: int
    spend: float
    eta_seconds: float | None

    def line(self) -> str:
        eta = f" · about {duration(self.eta_seconds)} left" if self.eta_seconds is not None else ""
        cancelled = f" · {self.cancelled} cancelled" if self.cancelled else ""
        return (
            f"tickets {self.done}/{self.total} done · {plural(self.running, 'attempt')} at work · "
            f"{self.verified} verified · {self.failed} failed · {self.errored} errored{cancelled} · "
            f"${self.spend:.2f}{eta}"
        )


def progress(start: Snapshot, now: Snapshot, elapsed: float) -> Progress:
    """Pure: the progress between two snapshots; the ETA assumes the pace so far holds."""
    total = start.count(ACTIVE_TICKET) + max(sum(now.tickets.values()) - sum(start.tickets.values()), 0)
    done = max(total - now.count(ACTIVE_TICKET), 0)
    eta = elapsed / done * (total - done) if done and total > done else None

    def gained(*statuses: str) -> int:
        return max(now.count(statuses) - start.count(statuses), 0)

    return Progress(
        done=done,
        total=total,
        running=now.busy,
        verified=gained(*VERIFIED),
        failed=gained(TicketStatus.FAILED),
        errored=gained(TicketStatus.ERROR),
        cancelled=gained(TicketStatus.CANCELLED),
        spend=max(now.spend - start.spend, 0.0),
        eta_seconds=eta,
    )


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def banner(command: str, settings: Settings, concurrency: int, until_idle: bool, logfile: str | None) -> list[str]:
    """What `fleet up` or `fleet worker` runs, and where: the home folder is named even when the state is in
    FLEET_DATABASE_URL's database, since this host's mirrors, worktrees and log are there."""
    broker = f"embedded ({settings.broker_dir})" if settings.embedded else shown_url(settings.broker_url)
    home = settings.place.folder() + (": this host's mirrors, worktrees and log" if settings.database_url else "")
    lines = [
        f"fleet {command}: home {home}",
        f"  database {shown_url(settings.db_url)}",
        f"  broker {broker}",
        f"  one worker process, {plural(concurrency, 'slot')}; "
        + ("exits when no work is left" if until_idle else "Ctrl-C stops"),
    ]
    return lines + [f"  worker log {logfile} (-v shows it here)"] if logfile else lines


def handed_back_line(attempts: int, then: str) -> str:
    """What a stop that handed attempts back did, and what runs them again."""
    return f"{plural(attempts, 'attempt')} went back in line, no verdict: {then}"


def summary(p: Progress, elapsed: float, handed_back: int = 0) -> list[str]:
    lines = [f"done in {duration(elapsed)}: {p.line()}"]
    if handed_back:
        lines.append(handed_back_line(handed_back, "run `fleet up` to resume"))
    if p.verified:
        lines.append(f"next: `fleet review list` ({plural(p.verified, 'verified diff')} waiting for review)")
    if p.failed:
        lines.append("next: `fleet tickets --status failed`, then `fleet show ID` for the feedback of each attempt")
    if p.errored:
        lines.append(
            "next: `fleet tickets --status error`, then `fleet show ID` for what broke (not the agent's doing)"
        )
    if not p.total:
        lines.append("nothing was queued: `fleet submit --repo NAME --title ...` queues a ticket")
    return lines


class Reporter:
    """A thread that shows progress while the workers run: one line rewritten in a terminal, else plain lines."""

    def __init__(self, db: Database, stream: TextIO, interval: float = 1.0) -> None:
        self.db, self.stream, self.interval = db, stream, interval
        self.live = stream.isatty()
        self.start, self.started = snapshot(db), time.monotonic()
        self.stopped = threading.Event()
        self.handed_back = 0  # the attempts the workers put back in line as they stopped, for the summary
        self.thread = threading.Thread(target=self._loop, daemon=True, name="fleet-progress")
        self.drawing = threading.Lock()  # a line said (a stop, from the signal's thread) and the live line's redraw
        self.drawn = ""

    def current(self) -> Progress:
        return progress(self.start, snapshot(self.db), time.monotonic() - self.started)

    def _loop(self) -> None:
        """The first line at once, from the counts at the start; then a line whenever they change."""
        now, last, last_at = progress(self.start, self.start, 0.0), "", 0.0
        while True:
            counts = replace(now, eta_seconds=None).line()  # a new ETA alone is no news for a log
            with self.drawing:
                if self.live:
                    self.drawn = now.line()
                    self.stream.write("\r\x1b[K" + self.drawn)
                elif counts != last or time.monotonic() - last_at >= PLAIN_EVERY_SECONDS:
                    self.stream.write(now.line() + "\n")
                    last, last_at = counts, time.monotonic()
                self.stream.flush()
            if self.stopped.wait(self.interval):
                return
            now = self.current()

    def say(self, line: str) -> None:
        """A line of its own (what a stop does): in a terminal above the live line, which is drawn again under it."""
        with self.drawing:
            self.stream.write(("\r\x1b[K" + line + "\n" + self.drawn) if self.live else line + "\n")
            self.stream.flush()

    def finish(self) -> list[str]:
        self.stopped.set()
        self.thread.join()
        if self.live:
            self.stream.write("\r\x1b[K")
        return summary(self.current(), time.monotonic() - self.started, self.handed_back)


def worker_log(settings: Settings) -> Path:
    """Where Celery's own log goes when the command line shows progress instead."""
    logs = settings.home.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / "worker.log"


@contextmanager
def reporting(db: Database, stream: TextIO = sys.stdout, summarise: bool = True) -> Iterator[Reporter]:
    """Progress while the block runs; then the summary and what to run next (unless the caller prints its own)."""
    reporter = Reporter(db, stream)
    reporter.thread.start()
    try:
        yield reporter
    finally:
        summary_lines = reporter.finish()
        for line in summary_lines if summarise else []:
            stream.write(line + "\n")
        stream.flush()
