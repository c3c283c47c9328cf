"""`fleet demo`: a sample repository, scripted agents, and a run to the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from fleet.cli.console import one_line_errors, out
from fleet.cli.context import Context

commands = typer.Typer()


@commands.command()
@one_line_errors
def demo(
    concurrency: Annotated[int, typer.Option(help="Slots for the demo's workers.")] = 4,
) -> None:
    """Make a sample repository with real bugs, queue tickets for scripted agents, and run them."""
    from fleet.demo import run_demo

    ctx = Context()
    run_demo(ctx, concurrency, out)
