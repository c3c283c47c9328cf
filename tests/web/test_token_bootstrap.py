"""`fleet token bootstrap`: the first admin token of a new deployment, from a secret file or shown once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer
from typer.testing import CliRunner

from fleet.cli.web import register
from orchestrator.web.auth import check_token

if TYPE_CHECKING:
    from db.engine import Database

Cli = tuple[typer.Typer, dict[str, str]]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    app = typer.Typer()
    register(app)
    return app, {"FLEET_HOME": str(tmp_path / "home"), "FLEET_DATABASE_URL": "", "FLEET_BROKER_URL": "embedded"}


def _db(env: dict[str, str]) -> Database:
    from db.engine import Database

    return Database(f"sqlite:///{Path(env['FLEET_HOME']) / 'fleet.db'}")


def test_bootstrap_from_a_secret_file_makes_one_admin_token_and_never_prints_the_secret(
    cli: Cli,
    tmp_path: Path,
) -> None:
    app, env = cli
    secret = "s3cr3t-" + "a" * 40
    (tmp_path / "admin_token").write_text(secret + "\n")
    first = CliRunner().invoke(app, ["token", "bootstrap", "--from-file", str(tmp_path / "admin_token")], env=env)
    assert first.exit_code == 0, first.output
    assert secret not in first.output and "log in with fleet_1_<the secret in" in first.stdout
    principal = check_token(_db(env), f"fleet_1_{secret}")
    assert principal is not None and principal.role.value == "admin"
    again = CliRunner().invoke(
        app, ["token", "bootstrap", "--from-file", str(tmp_path / "admin_token"), "--json"], env=env
    )
    assert again.exit_code == 0 and json.loads(again.stdout) == {"created": False}
    listed = json.loads(CliRunner().invoke(app, ["token", "list", "--json"], env=env).stdout)
    assert [(t["name"], t["role"]) for t in listed] == [("bootstrap-admin", "admin")]


def test_bootstrap_without_a_file_shows_a_new_token_once(cli: Cli) -> None:
    app, env = cli
    made = CliRunner().invoke(app, ["token", "bootstrap"], env=env)
    assert made.exit_code == 0 and "shown only this once" in made.stderr
    assert check_token(_db(env), made.stdout.strip()) is not None


@pytest.mark.parametrize(("content", "says"), [("short", "32 to 512 letters"), (None, "cannot read the token secret")])
def test_a_bad_secret_file_is_one_error_line_and_no_token(
    cli: Cli,
    tmp_path: Path,
    content: str | None,
    says: str,
) -> None:
    app, env = cli
    path = tmp_path / "admin_token"
    if content is not None:
        path.write_text(content)
    bad = CliRunner().invoke(app, ["token", "bootstrap", "--from-file", str(path)], env=env)
    assert bad.exit_code == 1 and bad.stderr.startswith("error:") and says in bad.stderr, bad.output
    assert bad.stderr.count("\n") == 1
    assert json.loads(CliRunner().invoke(app, ["token", "list", "--json"], env=env).stdout) == []


def test_register_adds_bootstrap() -> None:
    app = typer.Typer()
    register(app)
    assert "bootstrap" in CliRunner().invoke(app, ["token", "--help"]).stdout
