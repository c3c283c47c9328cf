"""What the command line prints of stored text: never a character that drives the terminal.

Ticket titles and bodies, agent names, transcripts, diffs and test output come from submitters, agents and the
code under test. Printed raw, an escape sequence in them could retitle the window, rewrite lines already on
screen, hide text or plant a hyperlink. Everything the CLI prints goes through for_terminal: TerminalConsole
applies it to every string rich renders (messages, table cells, rules), plain() to table cells, and `fleet logs`
to what it writes directly. `--json` needs nothing: json.dumps escapes every control character.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

# ECMA-48 sequences, dropped whole, in their 7-bit (ESC ...) and 8-bit (C1) forms: CSI (colours, cursor moves,
# erasing), then OSC, DCS, SOS, PM and APC strings (window titles, hyperlinks, clipboard writes) up to their
# terminator (BEL or ST) or the end of the line, then ESC and the characters of a two-character escape.
SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# What is left of the C0 controls but tab and newline, DEL and the C1 controls.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """text without escape sequences and control characters; tabs and newlines (multi-line text) stay."""
    return CONTROL.sub("", SEQUENCE.sub("", text.replace("\r\n", "\n")))


def clip(text: str, width: int) -> str:
    """text in at most width characters: cut at a word boundary where one is near, and marked with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:  # a word boundary in the second half: do not cut the last word in two
        cut = cut[:space]
    return cut.rstrip() + "…"


def plain(*values: Any) -> list[Text]:
    """Table cells that show user text as it is, minus control characters: a title with [brackets] is not markup."""
    return [Text(for_terminal(str(value))) for value in values]


class TerminalConsole(Console):
    """A rich Console that passes every string it renders through for_terminal first."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(for_terminal(text), **kwargs)
