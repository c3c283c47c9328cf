"""`fleet repo add`, `update`, `remove` and `list`."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from db import queries
from db.specs import RepoSettings, RepoSpec, help_text
from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, YesFlag, confirm, one_line_errors, out, print_json
from fleet.cli.context import Context, spec_from
from orchestrator import views
from orchestrator.repos import check_removable, register_repo, remove_repo, update_repo
from orchestrator.widening import limits_in_force

app = typer.Typer(no_args_is_help=True, help="Register, change, remove and list repositories.")


@app.command("add")
@one_line_errors
def repo_add(
    name: Annotated[str, typer.Argument(help=help_text(RepoSpec, "name"))],
    path: Annotated[str, typer.Argument(help=help_text(RepoSpec, "path"))],
    test_cmd: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "test_cmd"))] = None,
    setup_cmd: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "setup_cmd"))] = None,
    protect: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "protect"))] = None,
    hidden_tests: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "hidden_tests"))] = None,
    agent: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent"))] = None,
    allow_test_edits: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "allow_test_edits"))] = None,
    test_timeout: Annotated[float | None, typer.Option(help=help_text(RepoSettings, "test_timeout"))] = None,
    copy_file: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "copy_files"))] = None,
    max_concurrency: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "max_concurrency"))] = None,
    daily_budget_usd: Annotated[float | None, typer.Option(help=help_text(RepoSettings, "daily_budget_usd"))] = None,
    test_network: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "test_network"))] = None,
    setup_network: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "setup_network"))] = None,
    setup_host: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "setup_hosts"))] = None,
    env_cache: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "env_cache"))] = None,
    env_key_file: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "env_key_files"))] = None,
    ports: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "ports"))] = None,
    agent_sandbox: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "agent_sandbox"))] = None,
    agent_network: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent_network"))] = None,
    agent_model: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent_model"))] = None,
    agent_arg: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_args"))] = None,
    agent_env: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_env"))] = None,
    agent_host: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_hosts"))] = None,
    model_price: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "model_prices"))] = None,
    agent_memory_mb: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "agent_memory_mb"))] = None,
    agent_max_processes: Annotated[
        int | None, typer.Option(help=help_text(RepoSettings, "agent_max_processes"))
    ] = None,
    agent_address_space_mb: Annotated[
        int | None, typer.Option(help=help_text(RepoSettings, "agent_address_space_mb"))
    ] = None,
    test_env: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "test_env"))] = None,
    read_path: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "read_paths"))] = None,
    known_failure: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "known_failures"))] = None,
    context_limit: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "context_limit"))] = None,
    agent_instructions: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent_instructions"))] = None,
    deliver: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "deliver"))] = None,
    target_branch: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "target_branch"))] = None,
    remote: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "remote"))] = None,
    forge_url: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "forge_url"))] = None,
    forge_repo: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "forge_repo"))] = None,
    pr_label: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "pr_labels"))] = None,
    pr_draft: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "pr_draft"))] = None,
    feedback_user: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "feedback_users"))] = None,
    import_label: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "import_label"))] = None,
    notify_url: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "notify_url"))] = None,
    notify_format: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "notify_format"))] = None,
    export: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "export"))] = None,
    merge_slots: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "merge_slots"))] = None,
    merge_conflict_aware: Annotated[
        bool | None, typer.Option(help=help_text(RepoSettings, "merge_conflict_aware"))
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a git repository and how to test it. Options not given come from its .fleet.toml."""
    options = dict(locals())  # every parameter is a spec field: listing them again is how they drifted
    del options["as_json"]
    spec = spec_from(RepoSpec, options)  # the spec takes the options' singular names (SINGULAR)
    ctx = Context()
    repo = register_repo(ctx.db, spec, ctx.agents, limits_in_force(ctx.settings))
    if as_json:
        return print_json(repo)
    out.print(f"repo {repo['name']} registered: {repo['source']} (tests: {repo['test_cmd']})")


@one_line_errors
def repo_update(name: str, path: str | None = None, as_json: bool = False, **options: Any) -> None:
    """Change a repository's settings: the options given replace the stored values, the others stay."""
    changes = spec_from(RepoSettings, options)  # the spec takes the options' singular names (SINGULAR)
    ctx = Context()
    repo = update_repo(ctx.db, name, changes, path, ctx.agents)
    if as_json:
        return print_json(repo)
    out.print(f"repo {repo['name']} updated: {repo['source']} (tests: {repo['test_cmd']})")


def _update_signature() -> inspect.Signature:
    """`repo add`'s options (so the two cannot drift apart), with the path an option instead of an argument."""
    added = inspect.signature(repo_add, eval_str=True).parameters
    path = inspect.Parameter(
        "path",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[str | None, typer.Option(help="A new folder or URL of the repository.")],
    )
    return inspect.Signature([added["name"], path, *(p for n, p in added.items() if n not in ("name", "path"))])


repo_update.__signature__ = _update_signature()  # type: ignore[attr-defined]
app.command("update")(repo_update)


@app.command("remove")
@one_line_errors
def repo_remove(
    name: Annotated[str, typer.Argument(help="The registered repo name.")],
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Forget a repository and its finished tickets (refused while any ticket of it is open); the folder stays."""
    ctx = Context()
    check_removable(ctx.db, name)  # an unknown repo or an open ticket is said before the question, not after it
    confirm(f"Remove repo {name} and the record of its finished tickets?", yes)
    gone = remove_repo(ctx.db, name)
    if as_json:
        return print_json({"removed": name, "tickets": gone})
    out.print(f"repo {name} removed with {views.plural(gone, 'finished ticket')}; its folder is untouched")


@app.command("list")
@one_line_errors
def repo_list(as_json: JsonFlag = False) -> None:
    """List registered repositories."""
    ctx = Context()
    with ctx.db.session() as s:
        repos = [views.repo_view(r) for r in queries.list_repos(s)]
    if as_json:
        return print_json(repos)
    if not repos:
        return out.print(f"no repositories in {ctx.settings.where()}; add one with `fleet repo add NAME PATH`")
    cells = [(r["name"], r["source"], r["test_cmd"], r["default_agent"]) for r in repos]
    out.print(columns(("name", "source", "test command", "agent"), cells))
