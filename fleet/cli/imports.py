"""`fleet import github OWNER/REPO --label L`: open issues with the label become tickets, once each."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.cli.console import JsonFlag, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator.imports import find_repo, import_issues
from orchestrator.views import plural

app = typer.Typer(no_args_is_help=True, help="Turn forge issues into tickets.")


@app.command("github")
@one_line_errors
def import_github(
    forge_repo: Annotated[str, typer.Argument(metavar="OWNER/REPO", help="The repository on GitHub.")],
    label: Annotated[str, typer.Option(help="Only open issues with this label.")],
    repo: Annotated[str | None, typer.Option(help="The registered repo (default: the one whose remote it is).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open issues with the label become tickets (again and again: an issue already imported is skipped)."""
    ctx = Context()
    name = repo or find_repo(ctx.db, forge_repo)
    done = import_issues(ctx.db, ctx.dispatcher, ctx.settings, name, label)
    if as_json:
        return print_json({"repo": name, "created": done.created, "known": done.known})
    made = ", ".join(map(str, done.created)) or "none"
    out.print(f"{plural(len(done.created), 'ticket')} made from {forge_repo} ({made}); {done.known} already imported")
