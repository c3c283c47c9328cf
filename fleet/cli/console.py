"""What every command shares: the consoles, the one-line error wrapper and JSON output.

Nothing here loads SQLAlchemy or pydantic: the reading commands (`fleet tickets`, `show`, `status`) import only
this module; the others build their Context (fleet/cli/context.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from db.errors import AlreadyExists, DatabaseUnreachable, NotFound, UnsupportedDatabase
from db.lifecycle import IllegalTransition
from fleet.cli.cells import Terminal, for_terminal
from orchestrator.errors import FleetError

# Ticket text, prompts and transcripts are data: printed as they are, unwrapped, without control characters
# (fleet/cli/cells.py).
out = Terminal()
err = Terminal(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
# What a command ends with in one line: what was asked cannot be done, or the database named cannot be used.
BAD_INPUT = (FleetError, NotFound, AlreadyExists, IllegalTransition, UnsupportedDatabase, DatabaseUnreachable)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive bulk action; without a terminal (and without --yes) refuse in one line."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise FleetError(f"{question} Not asked without a terminal: add --yes")
    typer.confirm(question, abort=True)


def actor() -> str:
    import getpass

    return os.environ.get("FLEET_USER") or getpass.getuser()


def one_line(message: str) -> str:
    """A message on one line: a title or a parser's report may span several."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def one_line_errors(fn: F) -> F:
    """Bad input ends with one line on stderr and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BAD_INPUT as exc:
            err.print(f"error: {one_line(str(exc))}")
            raise typer.Exit(1) from None
        except OverflowError as exc:  # ids past 64 bits are refused as they are parsed (fleet/cli/help.py)
            err.print(f"error: a number is out of range: {one_line(str(exc))}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def as_lines(text: str) -> str:
    """Text as stored, ending in a newline, without the control characters that would drive the terminal."""
    text = for_terminal(text)
    return text if text.endswith("\n") else text + "\n"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
