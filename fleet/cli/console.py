"""What every command shares: the consoles, the one-line error wrapper, and the Context built at the entry point."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from db import queries
from db.engine import Database
from db.lifecycle import IllegalTransition
from db.migrate import SchemaTooNew, upgrade
from db.specs import SpecError, parse
from fleet.cli.cells import TerminalConsole, for_terminal
from fleet.wiring import celery_dispatcher
from orchestrator.dispatch import AgentRule, LazyDispatcher
from orchestrator.errors import FleetError
from system.settings import Settings

# Ticket text, prompts and transcripts are data: no emoji codes, no markup, no wrapping of error lines, and no
# control characters (fleet/cli/cells.py).
out = TerminalConsole(highlight=False, soft_wrap=True, emoji=False)
err = TerminalConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])
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
        except (FleetError, queries.NotFound, queries.AlreadyExists, IllegalTransition) as exc:
            err.print(f"error: {one_line(str(exc))}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


class Context:
    """Settings, database and dispatcher, built once per command at the entry point."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.settings.db_url)
        try:
            upgrade(self.db)
        except SchemaTooNew as exc:
            raise FleetError(str(exc)) from None
        self.dispatcher = LazyDispatcher(self.settings, celery_dispatcher)

    @property
    def agents(self) -> AgentRule:
        """The agents tickets and repositories may name."""
        return AgentRule(self.dispatcher, self.settings.agent_classes)


def as_lines(text: str) -> str:
    """Text as stored, ending in a newline, without the control characters that would drive the terminal."""
    text = for_terminal(text)
    return text if text.endswith("\n") else text + "\n"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


M = TypeVar("M", bound=BaseModel)


def spec_from(model: type[M], options: dict[str, Any]) -> M:
    """The options that were given (not None) as a spec; a value out of bounds is one FleetError line."""
    try:
        return parse(model, {key: value for key, value in options.items() if value is not None})
    except SpecError as exc:
        raise FleetError(str(exc)) from None
