"""A Python file's text as Python reads it, which its coding declaration (PEP 263) decides, and whether that is the
text a reviewer reads: a diff is read as UTF-8, but `# -*- coding: utf-7 -*-` makes Python read `+AF8-` as `_`, and
`unicode_escape` reads `\\x5f` so, code the diff shows as something else and the test-aware check would not parse.
"""

from __future__ import annotations

import codecs
import io
import tokenize


def python_text(data: bytes) -> str:
    """A Python file's text as Python reads it: in the encoding its coding declaration names (PEP 263), else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding, errors="replace")
    except (SyntaxError, LookupError, UnicodeError):  # Python would not import it either
        return data.decode("utf-8", errors="replace")


def misread(data: bytes) -> str | None:
    """The encoding a Python file declares when Python reads it otherwise than as UTF-8, as a reviewer reads the diff
    (`# coding: utf-7` turns `+AF8-` into `_`); None when both read the same text."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return None
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return None
    return None if python_text(data) == data.decode("utf-8", errors="replace") else encoding
