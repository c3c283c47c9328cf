"""One spec per noun: the same bounds and the same one-line error from the CLI, submit --file, the API and
.fleet.toml; and every field reaches every entry point, so they cannot drift apart again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSettings, RepoSpec, Spec, SpecError, TicketSpec, TokenSpec, parse
from fleet.cli import app as cli_app
from fleet.wiring import celery_dispatcher
from orchestrator.errors import FleetError
from orchestrator.gitrepo import NoCommit, resolve_commit
from orchestrator.repos import register_repo
from system.git import git
from system.settings import Settings
from tests.orchestrator.workers_stub import AGENTS, job_with
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo
from workers.pipeline import spec_for

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
TOO_MANY_ATTEMPTS = "attempts: must be at most 50 (got 99999999999)"
TOO_HIGH_PRIORITY = "priority: must be at most 1000000 (got 99999999999999999999)"
TOO_WIDE = "fanout: must be at most 32 (got 100000)"
TOO_MANY_PORTS = "ports: must be at most 10000 (got 100000)"


@dataclass
class Home:
    """A Fleet home with the sample repository registered as `calc`, the web app on it and an admin token."""

    tmp: Path
    repo: Path
    client: Any
    admin: dict[str, str]

    def cli(self, *args: str) -> str:
        """The command's one error line (it must fail with exit code 1 and print nothing else)."""
        result = CliRunner().invoke(cli_app, list(args))
        assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
        assert result.stderr.startswith("error: ")
        return result.stderr.removeprefix("error: ").strip()

    def api(self, path: str, body: dict[str, Any]) -> str:
        answer = self.client.post(path, json=body, headers=self.admin)
        assert answer.status_code == 422, answer.text
        detail: str = answer.json()["detail"]
        return detail


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    from fastapi.testclient import TestClient

    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    tmp = tmp_path_factory.mktemp("specs")
    settings = Settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 'home' / 'fleet.db'}", broker_url="embedded")
    web = create_app(settings, celery_dispatcher)
    write_sample_repo(tmp / "calc")
    register_repo(
        web.state.fleet.db,
        RepoSpec(name="calc", path=str(tmp / "calc"), test_cmd=SAMPLE_TEST_CMD),
        web.state.fleet.agents,
    )
    token = new_token(web.state.fleet.db, Role.ADMIN, "admin1", "test")[1]
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("FLEET_HOME", settings.home), ("FLEET_DATABASE_URL", settings.database_url)):
            env.setenv(name, str(value))
        env.setenv("FLEET_BROKER_URL", "embedded")
        client = TestClient(web, base_url="https://localhost")
        yield Home(tmp, tmp / "calc", client, {"Authorization": f"Bearer {token}"})
    web.state.fleet.db.dispose()


@pytest.mark.parametrize(
    ("option", "value", "line"),
    [
        ("attempts", 99999999999, TOO_MANY_ATTEMPTS),
        ("priority", 99999999999999999999, TOO_HIGH_PRIORITY),
        ("fanout", 100000, TOO_WIDE),
    ],
)
def test_a_ticket_bound_is_the_same_line_everywhere(home: Home, option: str, value: int, line: str) -> None:
    assert home.cli("submit", "--repo", "calc", "--title", "t", f"--{option}", str(value)) == line
    tickets = home.tmp / f"{option}.yaml"
    tickets.write_text(f"- title: fine\n- title: t\n  {option}: {value}\n")
    assert home.cli("submit", "--repo", "calc", "--file", str(tickets)) == f"ticket 2 in {tickets}: {line}"
    assert home.api("/api/tickets", {"repo": "calc", "title": "t", option: value}) == line


def commit_fleet_toml(repo: Path, text: str) -> None:
    (repo / ".fleet.toml").write_text(text)
    git("add", ".fleet.toml", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)


def test_a_repo_bound_is_the_same_line_everywhere(home: Home) -> None:
    path = home.tmp / "ported"
    write_sample_repo(path)
    assert home.cli("repo", "add", "ported", str(path), "--test-cmd", "true", "--ports", "100000") == TOO_MANY_PORTS
    assert home.api("/api/repos", {"name": "ported", "path": str(path), "ports": 100000}) == TOO_MANY_PORTS
    commit_fleet_toml(path, 'test_cmd = "true"\nports = 100000\n')
    assert home.cli("repo", "add", "ported", str(path)) == f".fleet.toml in {path}: {TOO_MANY_PORTS}"


def test_a_fleet_toml_not_yet_committed_is_named_when_it_is_needed(home: Home) -> None:
    path = home.tmp / "uncommitted"
    write_sample_repo(path)
    (path / ".fleet.toml").write_text('test_cmd = "python -m pytest -q"\n')  # read from HEAD, where it is not
    assert home.cli("repo", "add", "uncommitted", str(path)) == (
        f"a repo needs --test-cmd (or test_cmd in its .fleet.toml); {path}/.fleet.toml is read as committed at "
        "HEAD: commit it"
    )


def test_an_unknown_fleet_toml_key_is_refused_by_name(home: Home) -> None:
    path = home.tmp / "coloured"
    write_sample_repo(path)
    commit_fleet_toml(path, 'test_cmd = "true"\ncolour = "red"\n')
    assert home.cli("repo", "add", "coloured", str(path)) == f".fleet.toml in {path}: colour: unknown field"


def test_the_api_takes_every_repo_setting_and_documents_its_bounds(home: Home) -> None:
    schema = home.client.get("/api/openapi.json", headers=home.admin).json()["components"]["schemas"]
    assert set(RepoSettings.model_fields) <= set(schema["RepoIn"]["properties"])
    assert set(TicketSpec.model_fields) <= set(schema["TicketIn"]["properties"])
    assert schema["RepoIn"]["properties"]["ports"]["maximum"] == 10_000
    assert schema["TicketIn"]["properties"]["attempts"]["maximum"] == 50
    assert "bubblewrap" in schema["RepoIn"]["properties"]["agent_sandbox"]["description"]

    path = home.tmp / "everything"
    write_sample_repo(path)
    (home.tmp / "secret.env").write_text("KEY=1\n")
    body = {
        "name": "everything",
        "path": str(path),
        "test_cmd": SAMPLE_TEST_CMD,
        "test_timeout": 30,
        "copy_files": [f"{home.tmp / 'secret.env'}:.env"],
        "ports": 3,
        "agent_sandbox": False,
        "agent_network": "on",
        "agent_hosts": ["api.example.com:443"],
        "test_env": ["CI"],
        "read_paths": [str(home.tmp)],
        "env_key_files": ["uv.lock"],
    }
    answer = home.client.post("/api/repos", json=body, headers=home.admin)
    assert answer.status_code == 201, answer.text
    stored = answer.json()["settings"]
    assert stored["copy_files"] == [[str(home.tmp / "secret.env"), ".env"]]
    assert (stored["ports"], stored["agent_sandbox"], stored["test_timeout"]) == (3, False, 30.0)


def command(*names: str) -> click.Command:
    group: Any = typer.main.get_command(cli_app)
    for name in names:
        group = group.commands[name]
    found: click.Command = group
    return found


def option_names(*names: str) -> set[str]:
    return {str(param.name) for param in command(*names).params}


@pytest.mark.parametrize(("spec", "names"), [(RepoSpec, ("repo", "add")), (TicketSpec, ("submit",))])
def test_the_cli_has_an_option_for_every_spec_field(spec: type[RepoSpec | TicketSpec], names: tuple[str, ...]) -> None:
    options = option_names(*names)
    # Repeatable options are named in the singular: --agent-arg fills agent_args.
    missing = [field for field in spec.model_fields if field not in options and field.removesuffix("s") not in options]
    assert missing == []


def test_the_api_models_have_every_spec_field() -> None:
    from orchestrator.web.api import RepoIn, TicketIn, TokenIn
    from orchestrator.web.auth import Role

    assert set(RepoIn.model_fields) == set(RepoSpec.model_fields)
    assert set(TicketIn.model_fields) == set(TicketSpec.model_fields)
    assert {"budget_usd", "area"} <= set(TicketIn.model_fields)
    role = TokenIn.model_json_schema()["properties"]["role"]
    assert role["enum"] == [r.value for r in Role]


def test_the_worker_reads_settings_typed(home: Home) -> None:
    path = home.tmp / "slow"
    write_sample_repo(path)
    commit_fleet_toml(path, 'test_cmd = "true"\ntest_timeout = 7\nprotect = ["setup.cfg"]\n')
    db = Database(f"sqlite:///{home.tmp / 'typed.db'}")
    upgrade(db)
    stored = register_repo(db, RepoSpec(name="slow", path=str(path), ports=2), AGENTS)["settings"]
    settings = RepoSettings.from_stored(stored)
    job = job_with(settings, source=str(path))
    spec = spec_for(job, 60, 4000, 60)
    assert (spec.timeout, spec.protect, job.ports) == (7.0, ("setup.cfg",), 2)
    assert isinstance(job.repo_settings.test_timeout, float)
    db.dispose()


def test_refs_are_resolved_without_reaching_git_as_options(home: Home) -> None:
    head = git("rev-parse", "HEAD", cwd=home.repo).strip()
    assert resolve_commit(home.repo, "HEAD") == head
    for ref in ("--output=/tmp/x", "no-such-ref", "HEAD:README.md", ""):
        with pytest.raises(NoCommit):
            resolve_commit(home.repo, ref)
    with pytest.raises(FleetError, match="is not a git repository"):
        register_repo(Database("sqlite://"), RepoSpec(name="x", path=str(home.tmp), test_cmd="true"), AGENTS)


def _readme_tables() -> list[dict[str, list[str]]]:
    """The README's tables, each a field name to its row's cells (a blank line ends a table: Markdown renders the
    rows after it as text)."""
    tables: list[dict[str, list[str]]] = [{}]
    for line in (Path(__file__).parents[2] / "README.md").read_text().splitlines():
        if not line.startswith("|"):
            if tables[-1]:
                tables.append({})
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        tables[-1][cells[0].strip("`")] = cells
    return tables


@pytest.mark.parametrize("model", [RepoSettings, TicketSpec])
def test_the_readme_lists_every_field_in_one_table_with_its_meaning(model: type[Spec]) -> None:
    table = max(_readme_tables(), key=lambda table: len(set(model.model_fields) & set(table)))
    assert [name for name in model.model_fields if name not in table] == []
    meanings = {name: table[name][-1] for name in model.model_fields}
    assert meanings == {name: field.description for name, field in model.model_fields.items()}


@pytest.mark.parametrize(
    ("model", "data", "line"),
    [
        (RepoSettings, {"ports": "3"}, "ports: must be a whole number (got '3')"),
        (RepoSettings, {"max_concurrency": True}, "max_concurrency: must be a whole number (got True)"),
        (RepoSettings, {"test_env": ["A-B"]}, "test_env.0: is not a variable name (got 'A-B')"),
        (RepoSettings, {"agent_network": "off"}, "agent_network: must be one of '', 'none' or 'on' (got 'off')"),
        (TicketSpec, {"repo": "r", "title": "t", "until": "x"}, "until: must be one of 'first' or 'all' (got 'x')"),
        (TicketSpec, {"repo": "r", "title": "t", "budget_usd": -1}, "budget_usd: must be at least 0 (got -1)"),
        (TicketSpec, {"title": "t"}, "repo: is required"),
        (TokenSpec, {"role": "root"}, "role: must be one of 'viewer', 'submitter', 'reviewer' or 'admin' (got 'root')"),
    ],
)
def test_explain_names_the_field_the_bound_and_the_value(model: type[Spec], data: dict[str, Any], line: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse(model, data)
    assert str(refused.value) == line
