"""Commands whose flags, text and number parameters are read without pydantic: the reading commands' fast start.

Typer checks a parameter's value through a pydantic TypeAdapter it builds when the command runs (even a flag
left out, and `fleet`'s own --help), and importing pydantic for that costs `fleet tickets` and `fleet show` a
fifth of their time. PlainCommand (and the `fleet` group) give each flag and each one-value `str` or `int`
parameter without a parser or bounds a coercion of their own, with the message Typer's adapter gives; every
other parameter keeps Typer's. It fills the private slot Typer fills lazily (`_runtime_param`): should Typer
rename it, pydantic loads again and tests/core/test_cli_imports.py fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import typer
from typer._coercion import RuntimeParam
from typer.core import _TyperParameter

from fleet.cli.help import ReadableCommand

# What pydantic reads as an int from text: ASCII digits, single underscores between them, zeros after a point.
INTEGER = re.compile(r"\s*([+-]?[0-9](?:_?[0-9])*)(?:\.0+)?\s*")
NOT_AN_INTEGER = "Input should be a valid integer, unable to parse string as an integer"


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """A str or int parameter's value, checked as Typer's pydantic adapter checks it."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.annotation is bool:  # a flag: click gives it a bool
            if isinstance(value, bool):
                return value
            raise typer.BadParameter(f"{value!r} is not a flag's value", ctx=ctx, param=param)
        if self.annotation is str:
            return value if isinstance(value, str) else str(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and (digits := INTEGER.fullmatch(value)):
            return int(digits[1])
        raise typer.BadParameter(NOT_AN_INTEGER, ctx=ctx, param=param)


def is_plain(param: Any) -> bool:
    """A flag, or a one-value str or int parameter without a parser or bounds."""
    if not isinstance(param, _TyperParameter) or param.nargs != 1 or getattr(param, "multiple", False):
        return False
    info, annotation = param.type_descriptor.parameter_info, param.type_descriptor.annotation
    if annotation is bool:
        return bool(getattr(param, "is_flag", False))
    return annotation in (str, int) and info.parser is None and info.min is None and info.max is None


def plain_params(params: list[Any]) -> list[Any]:
    """params, each plain one given PlainParam unless Typer already built its own."""
    for param in params:
        if is_plain(param) and param._runtime_param is None:
            descriptor = param.type_descriptor
            param._runtime_param = PlainParam(descriptor.parameter_info, descriptor.annotation)
    return params


class PlainCommand(ReadableCommand):
    """A command whose plain parameters need no pydantic (with the readable help of fleet/cli/help.py)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_params(super().get_params(ctx))
