"""`fleet status`, `fleet stats` and `fleet migrate`: the fleet's figures and its database."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, one_line_errors, out, print_json
from fleet.cli.plain import PlainCommand
from fleet.cli.reading import database
from fleet.wiring import queue_depths_of
from orchestrator import views
from system.places import Place

commands = typer.Typer()


@commands.command(cls=PlainCommand)
@one_line_errors
def status(
    as_json: JsonFlag = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
) -> None:
    """Tickets by status, attempts in flight, workers and queue depth."""
    if watch:
        from fleet.cli.context import Context
        from fleet.cli.web import watch_loop

        return watch_loop(Context())
    place = Place.from_env()
    with database(place) as reader:
        counts = reader.ticket_counts(), reader.attempt_counts()
        workers = reader.workers()
    data = views.fleet_figures(*counts, workers, queue_depths_of(place))
    if as_json:
        return print_json(data)
    out.print(f"state: {place.where()}")
    out.print(render_status(data))


@commands.command()
@one_line_errors
def stats(
    hours: Annotated[float, typer.Option(help="The window: runs created in the last N hours.")] = 24 * 7,
    as_json: JsonFlag = False,
) -> None:
    """Per agent and model: tickets tried, verified rate, attempts and cost per verified diff, time to verified."""
    from fleet.cli.context import Context
    from orchestrator.stats import agent_stats

    rows = agent_stats(Context().db, hours)
    if as_json:
        return print_json(rows)
    cells = []
    for r in rows:
        row = [
            r["agent"],
            r["model"],
            r["tickets"],
            r["verified"],
            None if r["verified_rate"] is None else f"{r['verified_rate']:.0%}",
            r["attempts_per_verified"],
            r["cost_per_verified_usd"],
            r["median_seconds_to_verified"],
        ]
        cells.append(["-" if c is None else c for c in row])
    header = ("agent", "model", "tickets", "verified", "rate", "attempts/verified", "cost/verified", "median s")
    out.print(columns(header, cells))


@commands.command()
@one_line_errors
def migrate(as_json: JsonFlag = False) -> None:
    """Bring the database schema to the newest revision (every command also does this on first use)."""
    from fleet.cli.context import Context

    ctx = Context()
    if as_json:
        return print_json({"current": True, "database": ctx.settings.db_url.split("@")[-1]})
    out.print(f"database schema is current: {ctx.settings.db_url.split('@')[-1]}")


def render_status(data: dict[str, Any]) -> str:
    """The figures of views.fleet_figures as one table (`fleet status`, `fleet watch`)."""
    live = [w for w in data["workers"] if not w["stale"]]
    rows = [
        *((f"tickets {status}", count) for status, count in sorted(data["tickets"].items())),
        *((f"attempts {status}", count) for status, count in sorted(data["attempts"].items())),
        *((f"queue {queue}", "?" if depth is None else depth) for queue, depth in data["queues"].items()),
        ("workers", f"{len(live)} live, {len(data['workers']) - len(live)} stale"),
        ("slots busy", f"{sum(w['busy'] for w in live)} / {sum(w['slots'] for w in live)}"),
    ]
    return columns(("what", "count"), rows, title="Fleet")
