"""What the command line prints: plain text, never a character that drives the terminal.

Ticket titles and bodies, agent names, transcripts, diffs and test output come from submitters, agents and the
code under test. Printed raw, an escape sequence in them could retitle the window, rewrite lines already on
screen, hide text or plant a hyperlink. Everything the CLI prints goes through for_terminal: Terminal (`out` and
`err`) applies it to every line it writes, columns() to every cell, and `fleet logs` to what it writes directly.
`--json` needs nothing: json.dumps escapes every control character.

Tables are plain columns, two spaces apart, one row per line (as `git`, `docker` and `kubectl` print theirs): they
read the same in a terminal, a pipe and a log, and rendering them needs no layout library (rich's tables cost
`fleet tickets` about 45 ms of its 150: 20 to import, 25 to lay out 50 rows).
"""

from __future__ import annotations

import re
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from orchestrator.text import for_terminal

__all__ = ["Terminal", "cell_width", "clip", "columns", "for_terminal"]
GAP = "  "
BLANK = re.compile(r"\s")  # a tab or a line break inside a cell would break its row: each shows as a space


def clip(text: str, width: int) -> str:
    """text in at most width characters: cut at a word boundary where one is near, and marked with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:  # a word boundary in the second half: do not cut the last word in two
        cut = cut[:space]
    return cut.rstrip() + "…"


def cell_width(text: str) -> int:
    """The columns text takes on a terminal: two for a wide (East Asian) character, none for a combining mark."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cell(value: Any) -> str:
    return BLANK.sub(" ", for_terminal(str(value)))


def columns(header: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """rows under header as aligned columns, each as wide as its widest cell; title, when given, on a line above."""
    lines = [[cell(value) for value in row] for row in [header, *rows]]
    widths = [max(cell_width(line[i]) for line in lines) for i in range(len(header))]
    text = [
        GAP.join(value + " " * (width - cell_width(value)) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    return "\n".join([cell(title), *text] if title else text)


class Terminal:
    """Standard output or error as plain text: each line through for_terminal, nothing styled, nothing wrapped.

    The stream is looked up on each write, so a command run in-process (the tests' runner) writes to the stream
    in place at that moment."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self.stderr else sys.stdout

    def print(self, text: object = "") -> None:
        self.stream.write(for_terminal(str(text)) + "\n")

    def rule(self, title: str) -> None:
        """A line across the terminal, title in it: what separates one text from the next (a diff, a transcript)."""
        title = cell(title)
        rest = shutil.get_terminal_size().columns - cell_width(title) - 4
        self.print(f"── {title} {'─' * max(rest, 2)}")
