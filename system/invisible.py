"""The invisible characters that change how text reads, and text with them written out so it reads as it runs."""

from __future__ import annotations

import re

# The marks that reorder text ("Trojan Source", CVE-2021-42574), zero-width and format characters (two names that
# look alike), and the line and paragraph separators some editors break lines at where git does not. A reviewer
# must read code as it runs.
INVISIBLE = re.compile(
    "[\u0085\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]"
)


def invisible_shown(text: str) -> str:
    """text with each invisible character (INVISIBLE) written out as <U+XXXX>, so it is read as it runs."""
    return INVISIBLE.sub(lambda mark: f"<U+{ord(mark[0]):04X}>", text)


LONE_CR = re.compile(r"\r(?!\n)")  # Python (and many editors) end a line at a lone carriage return; git does not


def carriage_returns_shown(text: str) -> str:
    """text with each carriage return that does not end a line before its newline written out as <U+000D>: a diff
    line holding one is two lines of Python shown as one (a terminal would draw the second over the first)."""
    return LONE_CR.sub("<U+000D>", text)
