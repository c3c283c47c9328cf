"""`fleet` answers at once: it loads only what the command it runs needs, and lists tickets a page at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer.main

from fleet.cli import build_app
from fleet.cli.lazy import COMMANDS, load

HEAVY = ("sqlalchemy", "alembic", "celery", "kombu", "fastapi", "pydantic", "pydantic_settings", "git")
PROBE = """
import json, sys
from fleet.cli import main
sys.argv = ["fleet", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stdout = sys.__stdout__
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def modules_after(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_heavy_module() -> None:
    loaded = modules_after("--help")
    assert "typer" in loaded  # the probe ran the command line
    assert sorted(m for m in HEAVY if m in loaded) == []
    assert not [m for m in loaded if m.split(".")[0] in ("db", "orchestrator", "workers", "verification")]


def test_a_command_loads_its_own_module_only() -> None:
    loaded = modules_after("tickets", "--help")
    assert "fleet.cli.tickets" in loaded
    assert not {"fleet.cli.web", "fleet.cli.workers", "celery", "fastapi"} & loaded


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
