"""`fleet token create|list|revoke`: API tokens for the web dashboard and the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from db.specs import TokenSpec, help_text
from fleet.cli.cells import plain
from fleet.cli.console import Context, JsonFlag, actor, one_line_errors, out, print_json, spec_from

app = typer.Typer(no_args_is_help=True, help="API tokens for the web dashboard and the HTTP API.")


@app.command("create")
@one_line_errors
def token_create(
    role: Annotated[str, typer.Option(help=help_text(TokenSpec, "role"))],
    name: Annotated[str, typer.Option(help=help_text(TokenSpec, "name"))] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it once: only its hash is stored."""
    from orchestrator.web.auth import Role, new_token

    spec = spec_from(TokenSpec, {"role": role, "name": name})
    token_id, token = new_token(Context().db, Role(spec.role), spec.name, actor())
    if as_json:
        return print_json({"id": token_id, "role": spec.role, "name": spec.name, "token": token})
    typer.echo(token)
    typer.echo(f"token {token_id} ({role}) created; it is shown only this once", err=True)


@app.command("list")
@one_line_errors
def token_list(as_json: JsonFlag = False) -> None:
    """List tokens (never their secrets)."""
    from db import tokens
    from orchestrator.web.api import token_view

    with Context().db.session() as s:
        rows = [token_view(t) for t in tokens.list_tokens(s)]
    if as_json:
        return print_json(rows)
    table = Table("id", "name", "role", "created", "last used")
    for r in rows:
        table.add_row(*plain(r["id"], r["name"], r["role"], r["created_at"] or "", r["last_used_at"] or "never"))
    out.print(table)


@app.command("revoke")
@one_line_errors
def token_revoke(token_id: int, as_json: JsonFlag = False) -> None:
    """Revoke a token; its sessions end at once. A token revoked before stays as it was, and the answer says so."""
    from db import tokens
    from orchestrator.web.api import token_view

    with Context().db.session() as s:
        before = tokens.get_token(s, token_id).revoked_at
        view = token_view(tokens.revoke(s, token_id))
    if as_json:
        return print_json(view | {"already_revoked": before is not None})
    if before is not None:
        return out.print(f"token {token_id} was already revoked (at {view['revoked_at']}); nothing changed")
    out.print(f"token {token_id} revoked")
