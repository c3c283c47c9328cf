"""`fleet repo add` and `fleet repo list`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from db import queries
from fleet.cli.cells import plain
from orchestrator import views
from orchestrator.repos import RepoSpec, register_repo

if TYPE_CHECKING:
    pass

from fleet.cli.console import Context, JsonFlag, one_line_errors, out, print_json

app = typer.Typer(no_args_is_help=True, help="Register and list repositories.")


@app.command("add")
@one_line_errors
def repo_add(
    name: str,
    path: str,
    test_cmd: Annotated[str, typer.Option(help="The command that runs the repository's tests.")] = "",
    setup_cmd: Annotated[str, typer.Option(help="Run before the agent and before the tests.")] = "",
    protect: Annotated[list[str] | None, typer.Option(help="A path glob agents may not change (repeatable).")] = None,
    hidden_tests: Annotated[str, typer.Option(help="A folder of tests the agent never sees.")] = "",
    agent: Annotated[str, typer.Option(help="The default agent for this repo's tickets.")] = "",
    allow_test_edits: Annotated[bool, typer.Option(help="Tickets may add tests.")] = False,
    copy_file: Annotated[
        list[str] | None, typer.Option(help="SRC:DEST, a file copied into every checkout, never diffed.")
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="At most this many attempts of this repo at once.")] = 0,
    daily_budget_usd: Annotated[float, typer.Option(help="No new attempt once today's spend reaches this.")] = 0.0,
    test_network: Annotated[bool, typer.Option(help="Sandboxed test runs may use the network.")] = False,
    env_cache: Annotated[bool, typer.Option(help="Reuse what --setup-cmd built while its key files match.")] = True,
    env_key_file: Annotated[
        list[str] | None, typer.Option(help="A glob of the files that define the environment (repeatable).")
    ] = None,
    ports: Annotated[int, typer.Option(help="Ports each attempt needs (default: FLEET_PORT_BLOCK_SIZE).")] = 0,
    agent_sandbox: Annotated[
        bool | None, typer.Option("--agent-sandbox/--no-agent-sandbox", help="Run agents in bubblewrap.")
    ] = None,
    agent_network: Annotated[str, typer.Option(help="none or on: may sandboxed agents use the network.")] = "",
    agent_model: Annotated[str, typer.Option(help="The model this repo's agents use unless a ticket names one.")] = "",
    agent_arg: Annotated[list[str] | None, typer.Option(help="An argument every agent gets (repeatable).")] = None,
    agent_env: Annotated[
        list[str] | None, typer.Option(help="A variable name passed through to every agent (repeatable).")
    ] = None,
    agent_host: Annotated[
        list[str] | None, typer.Option(help="host:port sandboxed agents may reach besides their model API.")
    ] = None,
    test_env: Annotated[
        list[str] | None, typer.Option(help="A variable name passed through to the tests (repeatable).")
    ] = None,
    read_path: Annotated[
        list[str] | None, typer.Option(help="A path every sandbox of this repo shows read-only (repeatable).")
    ] = None,
) -> None:
    """Register a git repository and how to test it."""
    ctx = Context()
    spec = RepoSpec(
        name=name,
        path=path,
        test_cmd=test_cmd,
        setup_cmd=setup_cmd,
        protect=protect or [],
        hidden_tests=hidden_tests,
        agent=agent,
        allow_test_edits=allow_test_edits,
        copy_files=copy_file or [],
        max_concurrency=max_concurrency,
        daily_budget_usd=daily_budget_usd,
        test_network=test_network,
        env_cache=env_cache,
        env_key_files=env_key_file or [],
        ports=ports,
        agent_sandbox=agent_sandbox,
        agent_network=agent_network,
        agent_model=agent_model,
        agent_args=agent_arg or [],
        agent_env=agent_env or [],
        agent_hosts=agent_host or [],
        test_env=test_env or [],
        read_paths=read_path or [],
    )
    repo = register_repo(ctx.db, spec, ctx.agents)
    out.print(f"repo {repo['name']} registered: {repo['source']} (tests: {repo['test_cmd']})", markup=False)


@app.command("list")
@one_line_errors
def repo_list(as_json: JsonFlag = False) -> None:
    """List registered repositories."""
    with Context().db.session() as s:
        repos = [views.repo_view(r) for r in queries.list_repos(s)]
    if as_json:
        return print_json(repos)
    table = Table("name", "source", "test command", "agent")
    for r in repos:
        table.add_row(*plain(r["name"], r["source"], r["test_cmd"], r["default_agent"]))
    out.print(table)
