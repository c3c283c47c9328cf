"""The reading commands' DB-API rows (db/reads.py) render exactly as the ORM's objects, on SQLite and PostgreSQL:
every listing filter, every ticket's tree, the counts and the workers that `fleet status` shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from db import queries
from db.engine import Database
from db.migrate import HEAD
from db.reads import Reader, reading
from orchestrator import views
from verification.phrases import KNOWN_FAILING

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.fixture
def db(migrated: Database) -> Database:
    return migrated


@pytest.fixture
def reader(db: Database) -> Iterator[Reader]:
    with reading(db.url) as opened:
        assert opened is not None
        yield opened


def verdict(s: Any, attempt_id: int, name: str, **fields: Any) -> None:
    queries.add_verification(s, attempt_id, verdict=name, reasons=[f"{name}: why"], duration=1.23456, **fields)


def history(db: Database) -> list[int]:
    """Two repositories, tickets in several statuses; runs, attempts with and without verdicts, usage, feedback."""
    with db.session() as s:
        calc = queries.add_repo(s, name="calc", source="/calc", test_cmd="pytest")
        web = queries.add_repo(s, name="web", source="/web", test_cmd="pytest", setup_cmd="make")
        ids = []
        for n in range(7):
            repo = (calc, web)[n % 2]
            ticket = queries.add_ticket(
                s, ["shell", "llm"][: 1 + n % 2], repo_id=repo.id, title=f"ticket {n} [x] é", base_ref="main",
                base_sha=f"{n}" * 40, agent="shell", attempt_budget=3, targets=[f"tests/t.py::test_{n}"] * (n % 3),
                pr_url="https://forge/pr/1" if n == 3 else "", issue_number=n if n > 4 else None,
                status=["queued", "running", "needs_review", "failed", "cancelled"][n % 5],
                status_reason="budget spent" if n == 3 else "", cancelled_by="ann" if n == 4 else None,
            )  # fmt: skip
            ids.append(ticket.id)
            for run in ticket.runs:
                first = queries.add_attempt(s, run, "prompt")
                first.tokens_in, first.tokens_out, first.cost_usd, first.unpriced_calls = 1200, 300, 0.0123, n % 2
                first.reported_tokens_in, first.reported_cost_usd = (1500, 0.5) if n == 1 else (None, None)
                first.diff_stat, first.started_at, first.finished_at = "1 file, +2 -1", MOMENT, MOMENT
                first.status, first.exit_code, first.error = "finished", 0, "boom" if n == 5 else None
                warnings = [f"{KNOWN_FAILING}: tests/a.py::x, tests/b.py::y"] if n == 2 else []
                verdict(s, first.id, "gamed" if n == 3 else "failed", fail_to_pass=["t::a"], warnings=warnings)
                second = queries.add_attempt(s, run, "prompt", feedback_in="fix t::a\n")
                if n in (2, 3):
                    verdict(s, second.id, "passed" if n == 2 else "gamed", flags=["asserts removed"], flaky=["t::b"])
    return ids


def test_listing_pages_render_as_the_orms(db: Database, reader: Reader) -> None:
    ids = history(db)
    pages = [
        {},
        {"status": "failed"},
        {"repo": "web"},
        {"repo": "calc", "status": "queued"},
        {"limit": 2},
        {"limit": 2, "before": ids[4]},
        {"status": "approved"},
        {"repo": "nowhere"},
    ]
    for page in pages:
        with db.session() as s:
            orm = [views.ticket_view(t) for t in queries.list_tickets(s, **page)]
        assert [views.ticket_view(t) for t in reader.ticket_page(**page)] == orm, page
    assert [t["id"] for t in [views.ticket_view(t) for t in reader.ticket_page(limit=2, before=ids[4])]] == ids[2:4][
        ::-1
    ]


def test_every_tree_renders_as_the_orms(db: Database, reader: Reader) -> None:
    ids = history(db)
    for ticket_id in ids:
        with db.session() as s:
            orm = views.ticket_view(queries.load_ticket_tree(s, ticket_id), with_runs=True)
        assert views.ticket_view(reader.tree(ticket_id), with_runs=True) == orm
    shown = views.ticket_view(reader.tree(ids[2]), with_runs=True)
    assert shown["runs"][0]["attempts"][0]["verification"]["known_failing"] == ["tests/a.py::x", "tests/b.py::y"]
    assert views.ticket_view(reader.tree(ids[3]), with_runs=True)["verdict"] == "gamed"
    assert (
        "the agent reported"
        in views.ticket_view(reader.tree(ids[1]), with_runs=True)["runs"][0]["attempts"][0]["usage"]
    )
    with pytest.raises(queries.NotFound, match=f"unknown ticket {ids[-1] + 1}"):
        reader.tree(ids[-1] + 1)


def test_status_figures_are_the_orms(db: Database, reader: Reader) -> None:
    history(db)
    with db.session() as s:
        queries.beat(s, "host-a:1:x", hostname="host-a", pid=1, slots=4, busy=2, queues="fleet.agents")
        queries.beat(s, "host-b:2:y", hostname="host-b", pid=2, slots=2, busy=0, queues="fleet.verify")
        queries.beat(s, "host-c:3:z", hostname="host-c", pid=3, slots=1, busy=0, queues="")
        s.flush()
        live, stale, stopped = sorted(queries.list_workers(s), key=lambda w: w.id)
        for age, worker in enumerate((live, stale, stopped)):
            worker.started_at = MOMENT - timedelta(hours=age)  # an order without ties
        stale.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
        stopped.stopped_at = MOMENT
        [attempt, *_] = queries.open_attempts(s, 1)
        attempt.status = "running"
    with db.session() as s:
        counts = queries.ticket_counts(s), queries.attempt_counts(s)
        workers = [views.worker_view(w) for w in queries.list_workers(s)]
        orm = views.fleet_figures(*counts, queries.list_workers(s), None)
    assert (reader.ticket_counts(), reader.attempt_counts()) == counts
    assert [views.worker_view(w) for w in reader.workers()] == workers
    figures = views.fleet_figures(reader.ticket_counts(), reader.attempt_counts(), reader.workers(), None)
    assert figures == orm
    assert [(w["id"], w["stale"]) for w in figures["workers"]] == [("host-a:1:x", False), ("host-b:2:y", True)]


def test_the_schema_revision_is_read_with_the_same_connection(db: Database) -> None:
    with reading(db.url) as reader:
        assert reader is not None and reader.revision() == HEAD
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE alembic_version RENAME TO alembic_version_kept"))
    try:
        with reading(db.url) as reader:
            assert reader is not None and reader.revision() is None
    finally:  # the PostgreSQL database outlives the test
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE alembic_version_kept RENAME TO alembic_version"))


def test_no_database_file_is_no_reader(tmp_path: Any) -> None:
    with reading(f"sqlite:///{tmp_path / 'none.db'}") as nothing:
        assert nothing is None
    assert list(tmp_path.iterdir()) == []  # reading created no file
