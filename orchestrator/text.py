"""Stored text as people read it: agent output, test output and titles without the characters that drive a terminal.

Agent output is hostile. The command line (fleet/cli/cells.py) prints it through for_terminal; the web shows it
through the same function before Jinja escapes it, so an escape sequence in a transcript reads as nothing in
both.
"""

from __future__ import annotations

import re

from system.invisible import invisible_shown

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
    """text without escape sequences and control characters, its invisible characters shown (invisible_shown);
    tabs and newlines (multi-line text) stay."""
    return invisible_shown(CONTROL.sub("", SEQUENCE.sub("", text.replace("\r\n", "\n"))))
