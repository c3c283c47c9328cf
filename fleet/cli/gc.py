"""`fleet gc`: what finished attempts left behind."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from fleet.cli.console import JsonFlag, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator.errors import FleetError

commands = typer.Typer()
AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([dh]?)")
MAX_AGE_DAYS = 36500  # a hundred years; a date that far back overflows


def age_in_days(text: str) -> float:
    """`30`, `30d` or `12h` as days; anything else is one error line."""
    found = AGE.fullmatch(text.strip().lower())
    if found is None:
        raise FleetError(f"--older-than must be days (30 or 30d) or hours (12h), 0 or more (got {text!r})")
    number = float(found.group(1))
    days = number / 24 if found.group(2) == "h" else number
    if days > MAX_AGE_DAYS:
        raise FleetError(f"--older-than must be at most {MAX_AGE_DAYS} days (got {text!r})")
    return days


@commands.command("gc")
@one_line_errors
def gc_(
    older_than: Annotated[
        str | None,
        typer.Option(
            metavar="AGE",
            help="Also empty the transcripts, diffs and test output of attempts finished AGE ago or more: days "
            "(30 or 30d) or hours (12h). Tickets still open or awaiting review keep theirs; rows and verdicts stay.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove what finished attempts left: their folders and the mirrors' unreachable objects; print what went."""
    from workers.housekeeping import collect

    days = None if older_than is None else age_in_days(older_than)
    ctx = Context()
    lines = collect(ctx.db, ctx.settings, days)
    if as_json:
        return print_json(lines)
    for line in lines:
        out.print(line)
