"""`fleet` answers at once: it loads only what the command it runs needs, and lists tickets a page at a time.

The reading commands (`tickets`, `show`, `status`) load no SQLAlchemy, pydantic or Alembic even against a real
database, on SQLite and PostgreSQL, and still check the schema: a newer one is refused, an older one migrated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from sqlalchemy import inspect, text

from db.migrate import HEAD, alembic_config, current_revision
from fleet.cli import build_app
from fleet.cli.lazy import COMMANDS, load
from tests.conftest import Fleet, make_test_fleet

REFUSED = (
    f"error: the database schema is at revision 0999, newer than this Fleet's {HEAD}: upgrade Fleet on this host"
    " (rolling upgrades migrate the database first, then restart the workers with the new version)"
)

HEAVY = ("sqlalchemy", "alembic", "celery", "kombu", "fastapi", "pydantic", "pydantic_settings", "git")
PROBE = """
import json, sys
from fleet.cli import main
sys.argv = ["fleet", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
sys.stdout = sys.__stdout__
import gc
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules), "collecting": gc.isenabled()}))
"""
# What a reading command must not load: the ORM, the specs, the migrations, the broker, the web, the review stack,
# and a layout library (its tables are plain columns: fleet/cli/cells.py).
NOT_FOR_READING = (*HEAVY, "orchestrator.review", "orchestrator.delivery", "verification.verify", "httpx", "rich")


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """`fleet ARGS` in a fresh interpreter: its exit code, what it printed, and every module it had loaded."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env)
    *printed, last = proc.stdout.strip().splitlines()
    found = json.loads(last)
    return found["code"], "\n".join(printed).strip() + proc.stderr, set(found["modules"])


def collecting_after(*args: str, env: dict[str, str] | None = None) -> bool:
    """Whether garbage collection was on when `fleet ARGS` ended (the probe's last line)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["code"] == 0, proc.stdout + proc.stderr
    return bool(found["collecting"])


def modules_after(*args: str) -> set[str]:
    code, printed, loaded = probe(*args)
    assert code == 0, printed
    return loaded


def test_help_imports_no_heavy_module() -> None:
    loaded = modules_after("--help")
    assert "typer" in loaded  # the probe ran the command line
    assert sorted(m for m in HEAVY if m in loaded) == []
    assert not [m for m in loaded if m.split(".")[0] in ("db", "orchestrator", "workers", "verification")]
    # Help is click's plain layout: rich's markdown and layout code alone would cost about 100 ms.
    assert not {"rich", "typer.rich_utils", "markdown_it"} & loaded


def test_a_command_loads_its_own_module_only() -> None:
    loaded = modules_after("submit", "--help")
    assert "fleet.cli.tickets" in loaded
    assert not {"fleet.cli.web", "fleet.cli.workers", "celery", "fastapi"} & loaded
    listing = modules_after("tickets", "--help")
    assert "fleet.cli.listing" in listing
    assert not {"fleet.cli.tickets", "orchestrator.review", "orchestrator.delivery", "verification.verify"} & listing


def test_a_loaded_command_runs_with_garbage_collection_on(embedded: Fleet) -> None:
    # `fleet` loads a command with the collector off (fleet/cli/lazy.py) and turns it back on before the command
    # runs: `fleet up` and `fleet worker` run for days.
    embedded.sample_repo()
    assert collecting_after("tickets", env=embedded.env)
    assert collecting_after("repo", "list", env=embedded.env)
    assert not collecting_after("--help")  # nothing loaded, nothing run: the process ends as it is


def test_the_table_names_every_command_with_its_own_help() -> None:
    full: Any = typer.main.get_command(build_app())
    assert list(COMMANDS) == list(full.commands)
    for name, (_, _, help_line) in COMMANDS.items():
        assert full.commands[name].get_short_help_str(limit=500) == help_line
        assert load(name).name == name


def test_fleet_tickets_pages_back_by_id(embedded: Any, tmp_path: Any) -> None:
    import json as json_

    embedded.sample_repo()
    batch = tmp_path / "three.json"
    batch.write_text(json_.dumps([{"title": f"ticket {n}"} for n in range(3)]))
    ids = [t["id"] for t in embedded.submit("--repo", "calc", "--agent-cmd", "true", "--file", str(batch))]
    page = embedded.run("tickets", "--limit", "2").stdout
    assert f"older tickets: fleet tickets --before {ids[1]}" in page
    older = embedded.json("tickets", "--limit", "2", "--before", str(ids[1]))
    assert [t["id"] for t in older] == [ids[0]]


@pytest.fixture
def listed(database_url: str, tmp_path: Path) -> Fleet:
    """A Fleet on SQLite or PostgreSQL with one ticket, its run and first attempt."""
    fleet = make_test_fleet(tmp_path, database_url, FLEET_AGENT_SANDBOX="false")
    fleet.sample_repo()
    fleet.submit("--repo", "calc", "--title", "add [x]", "--agent-cmd", "true")
    return fleet


def orm_answers(fleet: Fleet, ticket: int) -> dict[str, Any]:
    """What the ORM's queries and views give for the reading commands' --json (the web's and the API's path)."""
    from db import queries
    from orchestrator import views
    from orchestrator.fleetstatus import fleet_status

    db = fleet.db()
    with db.session() as s:
        answers = {
            "tickets": [views.ticket_view(t) for t in queries.list_tickets(s, repo="calc", limit=50)],
            "show": views.ticket_view(queries.load_ticket_tree(s, ticket), with_runs=True),
        }
    answers["status"] = fleet_status(db, None) | {"queues": None}
    db.dispose()
    return json.loads(json.dumps(answers, default=str))


def test_reading_commands_load_no_orm_specs_or_migrations(listed: Fleet) -> None:
    [ticket] = listed.json("tickets")
    expected = orm_answers(listed, ticket["id"])
    for args in (["tickets", "--repo", "calc"], ["status"], ["show", str(ticket["id"])]):
        for output in ([], ["--json"]):
            code, printed, loaded = probe(*args, *output, env=listed.env)
            assert code == 0, printed
            assert sorted(m for m in NOT_FOR_READING if m in loaded) == [], args
            assert ("psycopg2" in loaded) == listed.database_url.startswith("postgresql"), args
            if output:  # the same answer as the ORM's
                answer = json.loads(printed)
                assert (answer | {"queues": None} if args == ["status"] else answer) == expected[args[0]]
    assert f"ticket {ticket['id']} [queued] add [x]" in probe("show", str(ticket["id"]), env=listed.env)[1]


def test_reading_commands_refuse_a_newer_schema_without_loading_it(listed: Fleet) -> None:
    db = listed.db()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    try:
        for args in (["tickets"], ["status"], ["show", "1"]):
            code, printed, loaded = probe(*args, env=listed.env)
            assert (code, printed.strip().splitlines()) == (1, [REFUSED]), args
            assert "sqlalchemy" not in loaded and "alembic" not in loaded
    finally:  # the PostgreSQL database outlives the test
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD})
        db.dispose()


def test_reading_commands_bring_an_older_schema_up_first(listed: Fleet) -> None:
    from alembic import command

    db = listed.db()
    command.downgrade(alembic_config(db), "0007")  # 0008, the newest, adds the merge queue's table
    assert not inspect(db.engine).has_table("merge_entries")
    code, printed, loaded = probe("tickets", "--json", env=listed.env)
    assert code == 0, printed
    assert [t["title"] for t in json.loads(printed)] == ["add [x]"]
    assert "alembic" in loaded  # the full path, once
    assert current_revision(db) == HEAD
    assert inspect(db.engine).has_table("merge_entries")
    db.dispose()
    _, _, loaded = probe("tickets", env=listed.env)
    assert "alembic" not in loaded


def test_status_counts_a_redis_brokers_queues_without_loading_celery(redis_url: str, tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, broker_url=redis_url)
    fleet.run("tickets")  # creates the database
    code, printed, loaded = probe("status", "--json", env=fleet.env)
    assert code == 0, printed
    assert sorted(m for m in NOT_FOR_READING if m in loaded) == []
    assert json.loads(printed)["queues"] == {"fleet.agents": 0, "fleet.verify": 0}  # not "?": the lists are empty
