"""The reading commands' own parameter check (fleet/cli/plain.py) reads a number as Typer's pydantic adapter does."""

from __future__ import annotations

import pytest
import typer
from pydantic import TypeAdapter, ValidationError
from typer.models import OptionInfo

from fleet.cli.plain import NOT_AN_INTEGER, PlainParam

TEXTS = ["5", "+5", "-5", " 5 ", "007", "-0", "5.0", "5.00", "3_0", "5.", "5.5", "_5", "5_", "5__0", ".0", "", "x"]
TEXTS += ["０５", "5e0", "0x10", "1 2"]


@pytest.mark.parametrize("text", TEXTS)
def test_an_int_reads_as_typers_adapter_reads_it(text: str) -> None:
    plain = PlainParam(OptionInfo(), int)
    try:
        expected: int | str = TypeAdapter(int).validate_python(text)
    except ValidationError as exc:
        expected = exc.errors()[0]["msg"]
    try:
        found: int | str = plain._coerce_value(text, param=None, ctx=None)
    except typer.BadParameter as exc:
        found = exc.message
    assert found == expected
    assert expected == NOT_AN_INTEGER or isinstance(expected, int)


def test_text_and_flags_pass_as_given() -> None:
    assert PlainParam(OptionInfo(), str)._coerce_value("a [b]", param=None, ctx=None) == "a [b]"
    assert PlainParam(OptionInfo(), bool)._coerce_value(True, param=None, ctx=None) is True
