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
    return INVISIBLE.sub(_written_out, text)


# The control characters but tab and newline (a carriage return only where it is not the end of a CRLF line): in a
# diff, Python reads a lone CR as a line break and a form feed in the indentation as its reset, and neither a
# terminal nor a browser draws either where Python reads it.
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


def controls_shown(text: str) -> str:
    """text with each control character but tab and newline (CONTROLS) written out as <U+XXXX>: for a diff, whose
    lines a reviewer must read as they run (a transcript's controls are dropped instead: orchestrator/text.py)."""
    return CONTROLS.sub(_written_out, text)


def _written_out(mark: re.Match[str]) -> str:
    return f"<U+{ord(mark[0]):04X}>"
