"""`fleet token create|list|revoke`: API tokens for the web dashboard and the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from db.specs import TokenSpec, help_text
from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, actor, one_line_errors, out, print_json
from fleet.cli.context import Context, spec_from
from orchestrator.errors import FleetError

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


@app.command("bootstrap")
@one_line_errors
def token_bootstrap(
    from_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the token's secret (e.g. a Docker secret); else one is made and shown."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create the first admin token of a new deployment; does nothing once any active token exists."""
    from orchestrator.web.auth import TOKEN_PREFIX, bootstrap_token

    secret = _read_secret(from_file) if from_file else ""
    try:
        made = bootstrap_token(Context().db, secret, actor())
    except ValueError as exc:
        raise FleetError(f"{from_file}: {exc}") from None
    if made is None:
        if as_json:
            return print_json({"created": False})
        return out.print("an active API token exists already; nothing to do")
    token_id, token = made
    if as_json:
        return print_json({"created": True, "id": token_id, "token": None if secret else token})
    if secret:  # the operator has the secret; it is not printed into logs
        return out.print(
            f"admin token {token_id} created: log in with {TOKEN_PREFIX}_{token_id}_<the secret in {from_file}>"
        )
    typer.echo(token)
    typer.echo(f"admin token {token_id} created; it is shown only this once", err=True)


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"cannot read the token secret from {path}: {exc}") from None


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
    cells = [(r["id"], r["name"], r["role"], r["created_at"] or "", r["last_used_at"] or "never") for r in rows]
    out.print(columns(("id", "name", "role", "created", "last used"), cells))


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
