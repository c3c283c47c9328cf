"""`fleet web`, `fleet token ...` and `fleet watch`; orchestrator/cli.py adds them with register(app)."""

from __future__ import annotations

import ipaddress
import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.errors import FleetError
from orchestrator.specs import TokenSpec, help_text
from orchestrator.terminal import TerminalConsole, plain

out = TerminalConsole(highlight=False, soft_wrap=True, markup=False, emoji=False)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, active_tokens: int) -> None:
    """Listening beyond this machine with no token would serve a dashboard nobody can log in to, or worse."""
    if not is_loopback(host) and active_tokens == 0:
        raise FleetError(
            f"refusing to listen on {host}: no API token exists yet; "
            "create one first with `fleet token create --role admin`"
        )


def serve_web(host: str, port: int) -> None:
    import uvicorn

    from db import tokens
    from orchestrator.settings import Settings
    from orchestrator.web.app import create_app

    app = create_app(Settings())
    with app.state.fleet.db.session() as s:
        check_bind(host, tokens.count_active(s))
    out.print(f"Fleet web on http://{host}:{port}/ (log in with a token from `fleet token create`)", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)


def watch_view(data: dict[str, Any]) -> Group:
    """`fleet status`'s table, running attempts and the review backlog, as one renderable."""
    from orchestrator.fleetstatus import render_status
    from orchestrator.web.render import duration

    running = Table("attempt", "ticket", "agent", "status", "elapsed", title="Running")
    for a in data["running"]:
        title = f"#{a['ticket']} {a['title'][:50]}"
        running.add_row(*plain(a["attempt"], title, a["agent"], a["status"], duration(a["elapsed_seconds"])))
    backlog = data["review_backlog"]
    footer = Text(
        f"review backlog {backlog['count']} (oldest {duration(backlog['oldest_age_seconds'])}) · "
        f"last hour {data['last_hour']['verified']} verified, {data['last_hour']['passed']} passed · "
        f"spend today ${data['spend_today_usd']:.2f} · {time.strftime('%H:%M:%S')} (Ctrl-C to stop)"
    )
    return Group(render_status(data), running, footer)


def watch_loop(ctx: Any, interval: float = 2.0, count: int = 0) -> None:
    """Redraw the fleet figures in place every `interval` seconds until Ctrl-C (or `count` draws)."""
    from orchestrator.web.figures import stats

    shown = 0
    try:
        with Live(watch_view(stats(ctx.db, ctx.dispatcher)), console=out, auto_refresh=False) as live:
            while True:
                shown += 1
                if count and shown >= count:
                    break
                time.sleep(max(interval, 0.1))
                live.update(watch_view(stats(ctx.db, ctx.dispatcher)), refresh=True)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    """Add `web`, `token` and `watch` to the fleet command line."""
    from orchestrator.cli import Context, actor, one_line_errors, print_json, spec_from

    token_app = typer.Typer(no_args_is_help=True, help="API tokens for the web dashboard and the HTTP API.")
    app.add_typer(token_app, name="token")

    @app.command()
    @one_line_errors
    def web(
        host: Annotated[
            str, typer.Option(help="Address to listen on; other than loopback needs a token.")
        ] = DEFAULT_HOST,
        port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    ) -> None:
        """Serve the web dashboard and the HTTP API."""
        serve_web(host, port)

    @token_app.command("create")
    @one_line_errors
    def token_create(
        role: Annotated[str, typer.Option(help=help_text(TokenSpec, "role"))],
        name: Annotated[str, typer.Option(help=help_text(TokenSpec, "name"))] = "",
    ) -> None:
        """Create a token and print it once: only its hash is stored."""
        from orchestrator.web.auth import Role, new_token

        spec = spec_from(TokenSpec, {"role": role, "name": name})
        token_id, token = new_token(Context().db, Role(spec.role), spec.name, actor())
        typer.echo(token)
        typer.echo(f"token {token_id} ({role}) created; it is shown only this once", err=True)

    @token_app.command("list")
    @one_line_errors
    def token_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
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

    @token_app.command("revoke")
    @one_line_errors
    def token_revoke(token_id: int) -> None:
        """Revoke a token; its sessions end at once."""
        from db import tokens

        with Context().db.session() as s:
            tokens.revoke(s, token_id)
        out.print(f"token {token_id} revoked")

    @app.command()
    @one_line_errors
    def watch(
        interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
        count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: until Ctrl-C).")] = 0,
    ) -> None:
        """`fleet status`, live: the same figures, refreshing in place."""
        watch_loop(Context(), interval, count)
