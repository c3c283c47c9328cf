"""What the command line prints of stored text: never a character that drives the terminal.

Ticket titles and bodies, agent names, transcripts, diffs and test output come from submitters, agents and the
code under test. Printed raw, an escape sequence in them could retitle the window, rewrite lines already on
screen, hide text or plant a hyperlink. Everything the CLI prints goes through for_terminal: TerminalConsole
applies it to every string rich renders (messages, table cells, rules), plain() to table cells, and `fleet logs`
to what it writes directly. `--json` needs nothing: json.dumps escapes every control character.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from orchestrator.text import for_terminal

__all__ = ["TerminalConsole", "clip", "for_terminal", "plain"]


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
