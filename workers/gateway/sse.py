"""Server-sent events cut from a byte stream as it passes, each kept as its raw bytes and its parsed fields.

The format (html.spec.whatwg.org, "server-sent events"): lines end in LF, CRLF or CR; an event ends at a blank
line; `event:` names it, `data:` lines are joined with LF, a line starting with `:` is a comment. The raw bytes are
passed on untouched, so the client gets exactly what the provider sent (less any event the gateway drops).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_PENDING = 16 * 2**20  # an "event" this long without an end is not one: pass it on unparsed


@dataclass(frozen=True)
class Event:
    raw: bytes
    name: str
    data: str


def parse_event(raw: bytes) -> Event:
    """The event's name and data from its lines."""
    name, data = "", []
    for line in raw.decode("utf-8", "replace").splitlines():
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return Event(raw, name, "\n".join(data))


class EventSplitter:
    """Feed bytes in, get whole events out; what is left at the end comes from flush().

    Each chunk is searched from where the last search ended (less the 3 bytes an event's end may straddle): an event
    of megabytes (a Responses stream echoes the request's instructions) costs its length once, not once a chunk."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._searched = 0  # of the pending bytes, those already known to hold no event's end

    def feed(self, chunk: bytes) -> Iterator[Event]:
        self._pending += chunk
        while match := EVENT_END.search(self._pending, max(0, self._searched - 3)):
            raw = bytes(self._pending[: match.end()])
            del self._pending[: match.end()]
            self._searched = 0
            yield parse_event(raw)
        self._searched = len(self._pending)
        if len(self._pending) > MAX_PENDING:
            yield Event(bytes(self._pending), "", "")
            self._pending, self._searched = bytearray(), 0

    def flush(self) -> Iterator[Event]:
        if self._pending:
            yield parse_event(bytes(self._pending))
            self._pending, self._searched = bytearray(), 0
