"""Help a newcomer can read: no Python types (`<list[str]>`), a value's name instead, nothing after a flag.

Typer labels every parameter with its annotation. Every command and group of `fleet` is given the classes below
(`readable(app)`), which name each value after its option (`--repo REPO`, `--agent AGENT`), show flags bare and
arguments by their name alone, so that an option added later is covered without being listed anywhere.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Help as wide as the terminal, up to 160 columns (click's own layout stops at 80 unless told); a command's context
# inherits it from its group's.
WIDE = {"max_content_width": 160}
NEGATIVE = re.compile(r"-[0-9]+")
MAX_ID = 2**63 - 1  # SQLite and PostgreSQL keep ids in 64 bits; the command line takes any number
ID = "ID"  # the metavar of an option that takes an id (`fleet tickets --before ID`); an int argument is always one


# Typer vendors its own click (typer._click); its classes are reached through typer.core, typed here as Any.
def _no_type(ctx: Any) -> None:
    return None


def readable_param(param: Any) -> None:
    """An option's value named after the option, a flag bare; an argument without its Python type."""
    if isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = "" if param.is_flag else (param.name or "value").upper()
    elif isinstance(param, TyperArgument):
        param.metavar = param.metavar or (param.name or "value").upper()
        # Typer's argument label ignores metavar: this instance shows none (its name is in the first column).
        param.display_type_rich = _no_type  # type: ignore[method-assign]


class ReadableCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable_param(param)
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """An id given as a negative number (click would read it as an unknown option) or past 64 bits (no row has
        it, and the database cannot even be asked) is one line naming the id."""
        ids = [p.name for p in self.params if isinstance(p, TyperArgument) and p.type_descriptor.annotation is int]
        negative = negative_argument(self.params, args) if ids else None
        if negative is not None:
            sys.stderr.write(f"error: {ids[0].removesuffix('_id')} ids are positive numbers (got {negative})\n")
            raise typer.Exit(1)
        rest = list(super().parse_args(ctx, args))
        too_large = id_past_64_bits(self.params, ctx.params)
        if too_large:
            sys.stderr.write(f"error: {too_large}\n")
            raise typer.Exit(1)
        return rest


def id_past_64_bits(params: list[Any], values: dict[str, Any]) -> str:
    """The error for the first id among values (an int argument, or an option whose metavar is ID) past MAX_ID."""
    for param in params:
        value = values.get(param.name)
        if type(value) is not int or value <= MAX_ID:
            continue
        if isinstance(param, TyperArgument):
            return f"{(param.name or 'ticket').removesuffix('_id')} ids are at most {MAX_ID} (got {value})"
        if isinstance(param, TyperOption) and param.metavar == ID:
            return f"{param.opts[0]} takes an id, and ids are at most {MAX_ID} (got {value})"
    return ""


def negative_argument(params: list[Any], args: list[str]) -> str | None:
    """The first argument in args that is a negative number and not an option's value, or None."""
    valued = {opt for p in params if isinstance(p, TyperOption) and not p.is_flag for opt in p.opts}
    for before, arg in zip(["", *args], args, strict=False):
        if arg == "--":
            return None
        if NEGATIVE.fullmatch(arg) and before not in valued:
            return arg
    return None


class ReadableGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            readable_param(param)
        return params


def readable(app: typer.Typer) -> None:
    """Give every command and group of app (and of its sub-apps) the readable classes, and plain help and usage
    errors (click's own layout: rich's would import rich's markdown and layout code, about 100 ms, first)."""
    app.rich_markup_mode = None
    app.info.context_settings = {**(app.info.context_settings or {}), **WIDE}
    app.info.cls = ReadableGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = ReadableCommand
    for group in app.registered_groups:
        group.cls = ReadableGroup
        sub: Any = group.typer_instance
        if sub is not None:
            readable(sub)
