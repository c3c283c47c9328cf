"""`fleet up` and `fleet worker`: the workers, in the foreground."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.errors import FleetError

if TYPE_CHECKING:
    pass

from fleet.cli.console import Context, one_line_errors

commands = typer.Typer()


@commands.command()
@one_line_errors
def up(
    concurrency: Annotated[int, typer.Option(help="Agent and verification slots.")] = 4,
    until_idle: Annotated[bool, typer.Option(help="Exit when no work is left.")] = False,
) -> None:
    """Run workers in the foreground (embedded mode: no server needed)."""
    from workers.serve import serve

    ctx = Context()
    raise typer.Exit(serve(ctx.settings, ctx.db, concurrency, until_idle=until_idle))


@commands.command()
@one_line_errors
def worker(
    concurrency: Annotated[int, typer.Option(help="Slots in this worker process.")] = 8,
    queue: Annotated[list[str] | None, typer.Option(help="Queues to consume: agents, verify (default both).")] = None,
) -> None:
    """Run a team-mode worker against FLEET_BROKER_URL and FLEET_DATABASE_URL."""
    from workers.constants import AGENT_QUEUE, QUEUES, VERIFY_QUEUE
    from workers.serve import serve

    names = {"agents": AGENT_QUEUE, "verify": VERIFY_QUEUE}
    queue = queue or []
    unknown = [q for q in queue if q not in names]
    if unknown:
        raise FleetError(f"unknown queue {unknown[0]!r}; one of: agents, verify")
    ctx = Context()
    raise typer.Exit(serve(ctx.settings, ctx.db, concurrency, [names[q] for q in queue] or list(QUEUES)))
