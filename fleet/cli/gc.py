"""`fleet gc`: what finished attempts left behind."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.cli.console import Context, JsonFlag, one_line_errors, out, print_json
from orchestrator.errors import FleetError

commands = typer.Typer()


@commands.command("gc")
@one_line_errors
def gc_(
    older_than: Annotated[
        float | None,
        typer.Option(
            metavar="DAYS",
            help="Also empty the transcripts, diffs and test output of attempts finished DAYS ago or more "
            "(tickets still open or awaiting review keep theirs; rows and verdicts stay).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove what finished attempts left: their folders and the mirrors' unreachable objects; print what went."""
    from workers.housekeeping import collect

    if older_than is not None and older_than < 0:
        raise FleetError("--older-than must be a number of days, 0 or more")
    ctx = Context()
    lines = collect(ctx.db, ctx.settings, older_than)
    if as_json:
        return print_json(lines)
    for line in lines:
        out.print(line, markup=False)
