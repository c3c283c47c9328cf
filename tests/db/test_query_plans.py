"""The listing and lookup queries use indexes on SQLite and PostgreSQL alike: none reads a whole table. So do the
reading commands' own queries (db/reads.py).

(A sort of the few rows an index found, such as a page's runs by their index, is fine.)

Each query runs once on a small database while its SQL is captured, then the database is asked for its plan:
SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN with sequential scans priced out (so a scan shows only where no
index can serve). The plans are printed, so `pytest -s` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from db import dashboard, queries, tokens
from db.dashboard import ReviewMark
from db.engine import Database
from db.migrate import upgrade
from db.models import utcnow
from db.reads import Reader, reading

Captured = list[tuple[str, Any]]


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    with database.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        for n in range(3):
            ticket = queries.add_ticket(
                s, ["shell"], repo_id=repo.id, title=f"t{n}", base_ref="HEAD", base_sha="0" * 40, agent="shell"
            )
            queries.add_attempt(s, ticket.runs[0], "prompt")
    return database


@contextmanager
def capture(db: Database) -> Iterator[Captured]:
    seen: Captured = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def plans(db: Database, seen: Captured, priced_out: tuple[str, ...] = ("seqscan",)) -> list[str]:
    postgres = db.engine.dialect.name == "postgresql"
    found = []
    with db.engine.connect() as conn:
        for method in priced_out if postgres else ():
            conn.exec_driver_sql(f"SET enable_{method} = off")
        for statement, parameters in seen:
            prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            found.append("\n".join(str(row[-1]) for row in rows))
    return found


READS: dict[str, Callable[[queries.Session], object]] = {
    "tickets, newest first": lambda s: queries.list_tickets(s, limit=50),
    "tickets by status": lambda s: queries.list_tickets(s, "queued", limit=50),
    "tickets of a repository": lambda s: queries.list_tickets(s, repo="r", limit=50),
    "the next page, by status": lambda s: dashboard.find_tickets(s, "queued", limit=50, with_runs=True, before=3),
    "the review list's next page": lambda s: dashboard.review_tickets(s, repo="r", limit=11, after=ReviewMark(3, 0)),
    "the review list's next page, by its id": lambda s: dashboard.review_tickets(s, limit=11, after=ReviewMark(3)),
    "a ticket with runs and attempts": lambda s: queries.load_ticket_tree(s, 1),
    "a ticket's events": lambda s: queries.ticket_events(s, 1),
    "a ticket's events, the next page": lambda s: queries.ticket_events(s, 1, limit=201, after=1),
    "a ticket's open attempts": lambda s: queries.open_attempts(s, 1),
    "a ticket's rejections": lambda s: queries.rejected_attempt_ids(s, 1),
    "a ticket's approval": lambda s: queries.approval(s, 1),
    "a ticket page's fingerprint": lambda s: dashboard.ticket_fingerprint(s, 1),
    "the waiting attempts": lambda s: queries.pending(s, per_repo=10),
    "the attempts holding slots": lambda s: queries.in_flight(s),
    "open attempts by status": lambda s: queries.attempt_counts(s),
    "the review backlog": lambda s: dashboard.review_backlog(s),
    "/metrics' running totals": lambda s: dashboard.totals(s),
    "the Fleet page's agent table": lambda s: queries.runs_since(s, utcnow() - timedelta(hours=24)),
}
HISTORY = {"attempts", "runs", "verifications", "reviews", "events"}  # the tables that grow with every ticket
FULL_SCANS = ("Seq Scan on tickets", "Seq Scan on attempts", "Seq Scan on reviews", "Seq Scan on events")


# Pages read newest first by walking an index backwards and stop at the limit: no sort of the whole table.
WALKED = {"tickets, newest first", "tickets by status", "the next page, by status", "the waiting attempts"}


@pytest.mark.parametrize("name", list(READS))
def test_query_uses_indexes(db: Database, name: str) -> None:
    with capture(db) as seen, db.session() as s:
        READS[name](s)
    assert seen
    assert_indexed(name, plans(db, seen), walked=name in WALKED)


def assert_indexed(name: str, found: list[str], walked: bool) -> None:
    """No plan reads a history table whole; a walked listing needs no sort (it follows an index's order)."""
    if walked:
        assert "Sort" not in found[0] and "TEMP B-TREE" not in found[0], found[0]
    for plan in found:
        print(f"{name}:\n{plan}\n")
        lines = plan.splitlines()
        assert not [line for line in lines if any(scan in line for scan in FULL_SCANS)], plan
        sqlite_scans = [line for line in lines if line.lstrip("|-` ").startswith("SCAN ")]
        # SQLite: a SCAN is a full read unless it goes through an index (or is the newest-first walk of tickets).
        unindexed = [line for line in sqlite_scans if "INDEX" not in line and line.split()[1] in HISTORY]
        assert not unindexed, plan


# Small tables, but paged by the API: a page is a range of a unique index, read in its order. On a few rows PostgreSQL
# would rather sort a bitmap scan's rows, so sorting is priced out too: a Sort left means no index gives the order.
PAGES: dict[str, Callable[[queries.Session], object]] = {
    "/api/repos' next page": lambda s: queries.list_repos(s, limit=101, after="a"),
    "/api/tokens' next page": lambda s: tokens.list_tokens(s, limit=201, after=1),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_a_page_is_an_index_range_in_its_order(db: Database, name: str) -> None:
    with capture(db) as seen, db.session() as s:
        PAGES[name](s)
    [plan] = plans(db, seen, priced_out=("seqscan", "sort", "bitmapscan"))
    print(f"{name}:\n{plan}\n")
    assert "Sort" not in plan and "TEMP B-TREE" not in plan and "Seq Scan" not in plan, plan
    assert "Index" in plan or "USING INDEX" in plan or "PRIMARY KEY" in plan, plan


class Recording(Reader):
    """A Reader that keeps each SELECT it sends, in its driver's parameter style."""

    def __init__(self, reader: Reader, seen: Captured) -> None:
        super().__init__(reader.conn, reader.dialect)
        self.seen = seen

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        self.seen.append((sql.replace("?", "%s") if self.dialect == "postgresql" else sql, tuple(params)))
        return super().rows(sql, params)


LIGHT_READS: dict[str, Callable[[Reader], object]] = {
    "fleet tickets": lambda r: r.ticket_page(limit=50),
    "fleet tickets --status": lambda r: r.ticket_page("queued", limit=50),
    "fleet tickets --repo": lambda r: r.ticket_page(repo="r", limit=50),
    "fleet tickets --status --before": lambda r: r.ticket_page("queued", limit=50, before=3),
    "fleet show": lambda r: r.tree(1),
    "fleet status": lambda r: (r.ticket_counts(), r.attempt_counts(), r.workers()),
}
LIGHT_WALKED = {"fleet tickets", "fleet tickets --status", "fleet tickets --status --before"}


@pytest.mark.parametrize("name", list(LIGHT_READS))
def test_reading_commands_use_indexes(db: Database, name: str) -> None:
    seen: Captured = []
    with reading(db.url) as reader:
        assert reader is not None
        LIGHT_READS[name](Recording(reader, seen))
    assert_indexed(name, plans(db, seen), walked=name in LIGHT_WALKED)


def test_metrics_read_their_running_totals_not_the_history(db: Database) -> None:
    """/metrics' verdicts, histograms and spend come from metric_totals (kept by triggers), whatever the history."""
    with capture(db) as seen, db.session() as s:
        dashboard.totals(s)
    [plan] = plans(db, seen)
    assert "metric_totals" in plan and not [table for table in (*HISTORY, "tickets") if f" {table}" in plan], plan


def test_the_review_backlog_is_read_from_an_index_alone(db: Database) -> None:
    """Every page's review badge asks it once a second: its count and its oldest wait come from the index, without
    reading each waiting ticket's row."""
    with capture(db) as seen, db.session() as s:
        dashboard.review_backlog(s)
    [plan] = plans(db, seen)
    print(plan)
    assert "COVERING INDEX" in plan or "Index Only Scan" in plan, plan


def test_the_agent_tables_runs_count_and_sum_their_own_attempts(db: Database) -> None:
    with db.session() as s:
        second = queries.add_attempt(s, queries.load_ticket_tree(s, 1).runs[0], "again")
        second.cost_usd = 0.25
        queries.load_ticket_tree(s, 1).runs[0].attempts[0].cost_usd = 0.5
        bare = queries.add_ticket(
            s, ["shell"], repo_id=1, title="no attempt yet", base_ref="HEAD", base_sha="0" * 40, agent="shell"
        )
    with db.session() as s:
        figures = {
            run.ticket_id: (run.attempts, run.cost_usd) for run in queries.runs_since(s, utcnow() - timedelta(hours=1))
        }
        assert not queries.runs_since(s, utcnow() + timedelta(hours=1))
    assert figures == {1: (2, 0.75), 2: (1, 0.0), 3: (1, 0.0), bare.id: (0, 0.0)}
