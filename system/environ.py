"""The process's environment, read once per change: a worker asks for it (git's, the secrets to redact) many times
per ticket, and reading os.environ decodes every variable each time."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

T = TypeVar("T")
_lock = threading.Lock()
_raw: dict[bytes, bytes] | None = None  # os.environ's own table, as last read
_read: Mapping[str, str] = MappingProxyType({})
_derived: dict[Callable[[Mapping[str, str]], object], object] = {}


def environment() -> Mapping[str, str]:
    """os.environ as it is now, read-only; read again only when a variable changed since the last call."""
    global _raw, _read
    table = getattr(os.environ, "_data", None)  # CPython's; elsewhere, read every time
    if not isinstance(table, dict):
        return MappingProxyType(dict(os.environ))
    with _lock:
        if table != _raw:
            # One copy of the table (atomic), decoded: reading os.environ again would race a thread that changes
            # it meanwhile (a KeyError, or a read that the copy no longer tells from the next change's).
            raw = dict(table)
            decode_key, decode_value = os.environ.decodekey, os.environ.decodevalue  # type: ignore[attr-defined]
            _raw, _read = raw, MappingProxyType({decode_key(k): decode_value(v) for k, v in raw.items()})
            _derived.clear()
        return _read


def derived(make: Callable[[Mapping[str, str]], T]) -> T:
    """make(environment()), made once per change of the environment (make must return what no caller changes)."""
    current = environment()
    with _lock:
        if current is _read and make in _derived:
            return _derived[make]  # type: ignore[return-value]
    made = make(current)
    with _lock:
        if current is _read:
            _derived[make] = made
    return made
