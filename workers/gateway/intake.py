"""How many bytes of request bodies the worker process's gateway is receiving at once.

A body is read from its connection before anything else of its call is known (its model, its budget hold), and a
sender that stalls part-way holds what it sent so far for as long as it likes. A gate's places (MAX_CALLS_AT_ONCE,
taken before a body is read) bound how many bodies one attempt sends at once; the intake bounds their bytes, for the
whole process here and for each gate in the handler, so that stalled senders are refused (503, retry) rather than
held in memory without end.

RECEIVING_BYTES is four of the largest bodies a gate takes: one gate may be receiving at most one of them
(its share, MAX_REQUEST_BYTES), so at least four attempts receive their largest body at once, and agents on the same
machine send over loopback in milliseconds: only a slow or stalled sender keeps its bytes here for long. With the
reader's queue (MAX_WAITING_BYTES), what the gateway holds of bodies not yet sent on is 192 MiB at most.
"""

from __future__ import annotations

RECEIVING_BYTES = 128 * 2**20


class Full(Exception):
    """Receiving more of a body would pass a bound on the bytes received at once: the request is refused, to be
    retried."""


class Intake:
    """The bytes of request bodies the worker process is receiving (touched on the gateway's loop only)."""

    def __init__(self, limit: int = RECEIVING_BYTES) -> None:
        self.limit = limit
        self.receiving = 0

    def take(self, size: int) -> None:
        """Count `size` more bytes being received, or raise Full past the limit."""
        if self.receiving + size > self.limit:
            raise Full(f"{self.limit // 2**20} MiB of request bodies are already being received")
        self.receiving += size

    def give_back(self, size: int) -> None:
        """The bytes of a body no longer being received (whole, refused or cut)."""
        self.receiving -= size
