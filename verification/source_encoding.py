"""A Python file's text as Python reads it, which its coding declaration (PEP 263) decides, and whether that is the
text a reviewer reads: a diff is read as UTF-8, but `# -*- coding: utf-7 -*-` makes Python read `+AF8-` as `_`, and
`unicode_escape` reads `\\x5f` so, code the diff shows as something else and the test-aware check would not parse.
"""

from __future__ import annotations

import ast
import codecs
import io
import tokenize
import warnings


def python_text(data: bytes) -> str:
    """A Python file's text as Python reads it: in the encoding its coding declaration names (PEP 263), else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding, errors="replace")
    except (SyntaxError, LookupError, UnicodeError):  # Python would not import it either
        return data.decode("utf-8", errors="replace")


def misread(data: bytes) -> str | None:
    """The encoding a Python file declares when Python reads other code than a reviewer reading the diff as UTF-8
    (`# coding: utf-7` turns `+AF8-` into `_`); None when both read the same code (_same_code: a latin-1 file's
    accented letters in its strings and comments read otherwise, and no code)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return None
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return None
    return None if _same_code(python_text(data), data.decode("utf-8", errors="replace")) else encoding


def _same_code(read: str, shown: str) -> bool:
    """Whether Python reads the code a reviewer is shown: the same ASCII characters in the same order, every other
    character inside a string or a comment, none in a name (Python folds names: a latin-1 `º` is an `o` to it)."""
    if _ascii(read) != _ascii(shown):
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(_python_lines(read)).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return all(token.string.isascii() or token.type in _TEXT for token in tokens) and _ascii_names(read)


_TEXT = (tokenize.STRING, tokenize.COMMENT)


def _ascii_names(read: str) -> bool:
    """Whether every name Python reads is ASCII, those inside an f-string's braces too (one STRING token to the
    tokenize module of Python 3.11, whose `f'{\u00aa}'` Python reads as the name `\u00c2a`); False when Python could
    not parse the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid escape's SyntaxWarning
            tree = ast.parse(read)
    except (SyntaxError, ValueError):
        return False
    return all(_named_in_ascii(node) for node in ast.walk(tree) if not isinstance(node, ast.Constant))


def _named_in_ascii(node: ast.AST) -> bool:
    """Whether the words a node holds (a Name's id, an attribute, an argument, an import, a function's name) are
    ASCII; a Constant's value, a string, is no name."""
    for field in node._fields:
        value = getattr(node, field, None)
        words = value if isinstance(value, list) else [value]
        if any(isinstance(word, str) and not word.isascii() for word in words):
            return False
    return True


def _python_lines(text: str) -> str:
    """The text with its line ends as Python's compiler splits them: a lone CR ends a line there, where the
    tokenize module, splitting at LF alone, takes `# note<CR>code` for one comment line and its code for comment."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _ascii(text: str) -> bytes:
    return text.encode("ascii", errors="ignore")
