"""The reading commands' queries (`fleet tickets`, `show`, `status`) through the DB-API alone: no SQLAlchemy.

Importing SQLAlchemy's ORM and the models costs more than the 150 ms a reading command may take, so these three
read with the driver itself (stdlib sqlite3, or psycopg2 for PostgreSQL) and return plain rows that carry the
models' attribute names: orchestrator/views.py renders them exactly as it renders the ORM's objects, and
tests/db/test_reads.py holds every row here equal to the ORM's. The rows convert what the ORM's column types
convert (UTCDateTime, JSON); anything that writes stays on the ORM.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from db.connections import POSTGRES_OPTIONS, SQLITE_BUSY_MS, postgres_address, sqlite_path, unreachable
from db.errors import NotFound
from db.lifecycle import OPEN_ATTEMPT
from db.revisions import VERSION_QUERY

TICKET_COLUMNS = (
    "id, title, status, status_reason, base_ref, base_sha, agent, priority, attempt_budget, fanout, targets, "
    "created_at, updated_at, cancelled_by, pr_url, issue_number, body"
)
ATTEMPT_COLUMNS = (
    "id, run_id, number, status, diff_stat, exit_code, error, agent_runs, recoveries, feedback_in, tokens_in, "
    "tokens_out, cost_usd, unpriced_calls, reported_tokens_in, reported_tokens_out, reported_cost_usd, started_at, "
    "finished_at"
)
VERIFICATION_COLUMNS = (
    "attempt_id, verdict, reasons, fail_to_pass, pass_to_pass, broken, flaky, flags, reverted, warnings, duration, "
    "feedback"
)
WORKER_COLUMNS = "id, hostname, pid, slots, busy, queues, heartbeat_at, stopped_at"
JSON_FIELDS = {"targets", "reasons", "fail_to_pass", "broken", "flaky", "flags", "reverted", "warnings"}
TIME_FIELDS = {"created_at", "updated_at", "started_at", "finished_at", "heartbeat_at", "stopped_at"}


class Row:
    """A row's columns as attributes, as the ORM's objects carry them. The classes below only name the columns and
    their types: a dataclass each would cost a reading command milliseconds to build at import."""

    def __init__(self, **columns: Any) -> None:
        self.__dict__.update(columns)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class RepoName(Row):
    name: str


class VerificationRow(Row):
    """The columns of a verification that views.verification_view reads."""

    attempt_id: int
    verdict: str
    reasons: list[Any]
    fail_to_pass: list[Any]
    pass_to_pass: int
    broken: list[Any]
    flaky: list[Any]
    flags: list[Any]
    reverted: list[Any]
    warnings: list[Any]
    duration: float
    feedback: str


class RunRow(Row):
    """A run with its attempts in order, as Run.attempts holds them."""

    id: int
    index: int
    agent: str
    status: str
    attempt_limit: int
    attempts: list[AttemptRow]

    @property
    def number(self) -> int:
        return self.index + 1


class AttemptRow(Row):
    """The columns of an attempt that views.attempt_view reads (not its texts), with its run and verification."""

    id: int
    run_id: int
    number: int
    status: str
    diff_stat: str
    exit_code: int | None
    error: str | None
    agent_runs: int
    recoveries: int
    feedback_in: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    unpriced_calls: int
    reported_tokens_in: int | None
    reported_tokens_out: int | None
    reported_cost_usd: float | None
    started_at: datetime | None
    finished_at: datetime | None
    run: RunRow
    verification: VerificationRow | None


class TicketRow(Row):
    """The columns of a ticket that views.ticket_view reads, its repository's name, and (from tree()) its runs."""

    id: int
    title: str
    status: str
    status_reason: str
    base_ref: str
    base_sha: str
    agent: str
    priority: int
    attempt_budget: int
    fanout: int
    targets: list[Any]
    created_at: datetime
    updated_at: datetime
    cancelled_by: str | None
    pr_url: str
    issue_number: int | None
    body: str
    repo: RepoName
    runs: list[RunRow]


class WorkerRow(Row):
    id: str
    hostname: str
    pid: int
    slots: int
    busy: int
    queues: str
    heartbeat_at: datetime
    stopped_at: datetime | None


def utc(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime, as UTCDateTime reads it (SQLite keeps naive ISO text)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Reader:
    """One DB-API connection for one reading command; `?` placeholders become the driver's own."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of one SELECT as dicts, JSON and timestamps converted as the ORM converts them."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.conn.cursor()
        if params:
            cursor.execute(sql, params)
        else:  # psycopg2 reads % as a placeholder only when given parameters
            cursor.execute(sql)
        names = [column[0] for column in cursor.description]
        return [self._converted(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]

    def _converted(self, row: dict[str, Any]) -> dict[str, Any]:
        for name in row.keys() & TIME_FIELDS:
            row[name] = utc(row[name])
        if self.dialect == "sqlite":  # psycopg2 decodes json itself
            for name in row.keys() & JSON_FIELDS:
                row[name] = None if row[name] is None else json.loads(row[name])
        return row

    def revision(self) -> str | None:
        """The schema's Alembic revision, None when the database has no schema yet."""
        exists = (
            "SELECT to_regclass('alembic_version') IS NOT NULL AS present"
            if self.dialect == "postgresql"
            else "SELECT count(*) AS present FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        )
        if not self.rows(exists)[0]["present"]:
            return None
        found = self.rows(VERSION_QUERY)
        return str(found[0]["version_num"]) if found else None

    def ticket_page(
        self, status: str | None = None, repo: str | None = None, limit: int = 500, before: int | None = None
    ) -> list[TicketRow]:
        """Tickets newest first, as queries.list_tickets pages them: before (an id) starts the page after it."""
        where, params = ["1 = 1"], []
        for clause, value in (("t.id < ?", before), ("t.status = ?", status), ("r.name = ?", repo)):
            if value:
                where.append(clause)
                params.append(value)
        join = "JOIN repos r ON r.id = t.repo_id" if repo else ""
        columns = ", ".join(f"t.{c.strip()}" for c in TICKET_COLUMNS.split(","))
        page = self.rows(
            f"SELECT {columns}, t.repo_id FROM tickets t {join} WHERE {' AND '.join(where)} ORDER BY t.id DESC LIMIT ?",
            [*params, limit],
        )
        # The repositories in a second query: joined to the page, PostgreSQL sorts the whole table before the limit.
        names = self._repo_names({row["repo_id"] for row in page})
        return [
            TicketRow(**_without(row, "repo_id"), repo=RepoName(name=names[row["repo_id"]]), runs=[]) for row in page
        ]

    def repo_names(self) -> list[str]:
        """Every registered repository's name, in order."""
        return [row["name"] for row in self.rows("SELECT name FROM repos ORDER BY name")]

    def _repo_names(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        return {
            row["id"]: row["name"] for row in self.rows(f"SELECT id, name FROM repos WHERE id IN ({marks})", [*ids])
        }

    def tree(self, ticket_id: int) -> TicketRow:
        """The ticket with its runs, attempts and verifications, as queries.load_ticket_tree loads them."""
        found = self.rows(f"SELECT {TICKET_COLUMNS}, repo_id FROM tickets WHERE id = ?", [ticket_id])
        if not found:
            raise NotFound(f"unknown ticket {ticket_id}")
        row = found[0]
        ticket = TicketRow(
            **_without(row, "repo_id"), repo=RepoName(name=self._repo_names({row["repo_id"]})[row["repo_id"]])
        )
        runs = {
            r["id"]: RunRow(**r, attempts=[])
            for r in self.rows(
                'SELECT id, "index", agent, status, attempt_limit FROM runs WHERE ticket_id = ? ORDER BY "index"',
                [ticket_id],
            )
        }
        attempts = [
            AttemptRow(**a)
            for a in self.rows(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE ticket_id = ? ORDER BY number", [ticket_id]
            )
        ]
        verdicts = self._verifications([a.id for a in attempts])
        for attempt in attempts:
            attempt.run = runs[attempt.run_id]
            attempt.verification = verdicts.get(attempt.id)
            attempt.run.attempts.append(attempt)
        ticket.runs = list(runs.values())
        return ticket

    def _verifications(self, attempt_ids: list[int]) -> dict[int, VerificationRow]:
        if not attempt_ids:
            return {}
        marks = ", ".join("?" * len(attempt_ids))
        query = f"SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE attempt_id IN ({marks})"
        return {v["attempt_id"]: VerificationRow(**v) for v in self.rows(query, attempt_ids)}

    def ticket_counts(self) -> dict[str, int]:
        """Tickets by status, as queries.ticket_counts counts them."""
        return {r["status"]: r["n"] for r in self.rows("SELECT status, count(*) AS n FROM tickets GROUP BY status")}

    def attempt_counts(self) -> dict[str, int]:
        """Open attempts by status, as queries.attempt_counts counts them."""
        marks = ", ".join("?" * len(OPEN_ATTEMPT))
        query = f"SELECT status, count(*) AS n FROM attempts WHERE status IN ({marks}) GROUP BY status"
        return {r["status"]: r["n"] for r in self.rows(query, [s.value for s in OPEN_ATTEMPT])}

    def workers(self) -> list[WorkerRow]:
        """The workers not stopped, newest first, as queries.list_workers lists them."""
        query = f"SELECT {WORKER_COLUMNS} FROM workers WHERE stopped_at IS NULL ORDER BY started_at DESC"
        return [WorkerRow(**w) for w in self.rows(query)]


def _without(row: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != name}


@contextmanager
def reading(url: str) -> Iterator[Reader | None]:
    """A Reader on the database at url, or None when there is no database file yet (the full path creates it)."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None or not path.exists():
            yield None
            return
        try:
            conn: Any = sqlite3.connect(path, timeout=SQLITE_BUSY_MS / 1000, isolation_level=None)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # a file that is not a database says so here
            conn.execute("BEGIN")  # one snapshot for every read of the command (WAL: it blocks no writer)
        except sqlite3.Error as exc:
            raise unreachable(url, exc) from None
        dialect = "sqlite"
    else:
        import psycopg2  # only for PostgreSQL URLs

        address = postgres_address(url)
        try:
            conn = psycopg2.connect(address, **({} if "options=" in address else {"options": POSTGRES_OPTIONS}))
        except psycopg2.OperationalError as exc:
            raise unreachable(url, exc) from None
        dialect = "postgresql"
    try:
        yield Reader(conn, dialect)
    finally:
        conn.close()  # the read transaction ends with the connection: nothing was written
