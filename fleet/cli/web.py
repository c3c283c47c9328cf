"""`fleet web` and `fleet watch`: the dashboard, and its figures live in the terminal."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from fleet.cli import tokens
from fleet.cli.cells import clip, columns, for_terminal
from fleet.cli.console import one_line_errors, out
from fleet.cli.context import Context
from orchestrator.errors import FleetError
from orchestrator.views import plural
from orchestrator.web.serving import Listener, is_loopback

commands = typer.Typer()
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


def check_bind(host: str, active_tokens: int) -> None:
    """Listening beyond this machine with no token would serve a dashboard nobody can log in to, or worse."""
    if not is_loopback(host) and active_tokens == 0:
        raise FleetError(
            f"refusing to listen on {host}: no API token exists yet; "
            "create one first with `fleet token create --role admin` "
            "(or `fleet token bootstrap --from-file SECRET_FILE` on a new deployment)"
        )


def serve_web(listener: Listener) -> None:
    import uvicorn

    from db import tokens
    from db.migrate import SchemaTooNew
    from fleet.cli.settings import load_settings
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    settings = load_settings()
    listener = replace(listener, hosts=tuple(settings.web_hosts))
    listener.check()
    try:
        app = create_app(settings, celery_dispatcher, listened_on=listener.host)
    except SchemaTooNew as exc:
        raise FleetError(str(exc)) from None
    with app.state.fleet.db.session() as s:
        check_bind(listener.host, tokens.count_active(s))
    listening = listener.bind()
    names = ", ".join(listener.answers_to)
    out.print(f"Fleet web on {listener.url} answering to {names} (log in with a token from `fleet token create`)")
    uvicorn.Server(listener.config(app)).run(sockets=[listening])


def watch_view(data: dict[str, Any]) -> str:
    """`fleet status`'s table, running attempts and the review backlog, as one text."""
    from fleet.cli.status import render_status
    from orchestrator.web.render import duration

    running = []
    for a in data["running"]:
        title = f"#{a['ticket']} {clip(a['title'], 50)}"
        running.append((a["attempt"], title, a["agent"], a["status"], duration(a["elapsed_seconds"])))
    backlog, hour = data["review_backlog"], data["last_hour"]
    footer = (
        f"review backlog {backlog['count']} (oldest {duration(backlog['oldest_age_seconds'])}) · "
        f"last hour {plural(hour['verifications'], 'verification')} run, {hour['passed']} passed · "
        f"spend today ${data['spend_today_usd']:.2f} · {time.strftime('%H:%M:%S')} (Ctrl-C to stop)"
    )
    running_table = columns(("attempt", "ticket", "agent", "status", "elapsed"), running, title="Running")
    return "\n\n".join((render_status(data), running_table, footer))


def watch_loop(ctx: Context, interval: float = 2.0, count: int = 0) -> None:
    """Redraw the fleet figures in place every `interval` seconds until Ctrl-C (or `count` draws)."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from orchestrator.web.figures import stats

    def view() -> Text:
        return Text(for_terminal(watch_view(stats(ctx.db, ctx.dispatcher))))

    shown = 0
    try:
        with Live(view(), console=Console(highlight=False, emoji=False), auto_refresh=False) as live:
            while True:
                shown += 1
                if count and shown >= count:
                    break
                time.sleep(max(interval, 0.1))
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass


@commands.command()
@one_line_errors
def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on; other than loopback needs a token, 0.0.0.0 also FLEET_WEB_HOSTS.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Certificate (PEM) to serve HTTPS itself; needs --tls-key.", show_default=False)
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key (PEM) of --tls-cert.", show_default=False)] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            help="Address of an HTTPS reverse proxy whose X-Forwarded-Proto/For headers are believed (repeatable).",
            metavar="ADDR",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the web dashboard and the HTTP API (plain HTTP on loopback only; see README, Serving the web app)."""
    serve_web(Listener(host, port, tls_cert, tls_key, tuple(trusted_proxy or ())))


@commands.command()
@one_line_errors
def watch(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: until Ctrl-C).")] = 0,
) -> None:
    """`fleet status`, live: the same figures, refreshing in place."""
    watch_loop(Context(), interval, count)


def register(app: typer.Typer) -> None:
    """Add `web`, `watch` and `token ...` to the fleet command line."""
    app.add_typer(commands)
    app.add_typer(tokens.app, name="token")
