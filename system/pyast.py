"""Python source parsed one thread at a time.

CPython 3.11's parser can fail with "SystemError: AST constructor recursion depth mismatch" when several threads
parse at once (python/cpython#106905); a worker verifies on a pool of threads, so every parse takes one lock.
"""

from __future__ import annotations

import ast
import threading

_ONE_AT_A_TIME = threading.Lock()


def parse(source: str | bytes) -> ast.Module:
    """ast.parse(source), never beside another thread's parse."""
    with _ONE_AT_A_TIME:
        return ast.parse(source)
