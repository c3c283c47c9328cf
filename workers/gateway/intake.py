"""How many bytes of request bodies the worker process's gateway is receiving at once, and for how long.

A body is read from its connection before anything else of its call is known (its model, its budget hold), and a
sender that stalls part-way would hold what it sent, and its call's place, for as long as it liked. So a body must
arrive whole within RECEIVE_SECONDS (else 408), and the bytes being received at once are bounded: for each gate in
the handler (its share, MAX_REQUEST_BYTES) and for the whole process here, so that stalled senders are refused
(503, retry) rather than held in memory without end.

Agents reach the gateway over loopback or their sandbox's relay: an honest body, even the largest (32 MiB), arrives in
well under a second, and RECEIVE_SECONDS leaves a loaded machine thirty times as long. A body that takes longer is a
stalled or trickling sender, holding its place and its bytes.

RECEIVING_BYTES is four of the largest bodies a gate takes: at least four attempts receive their largest body at once.
It is first come, first served, so a gate's first RESERVED_BYTES being received never count against it: four stalled
attempts holding the whole of it still leave every other attempt its usual calls (a long conversation is a few
hundred KiB). With the reader's line (32 MiB a gate), what the gateway holds of bodies not yet sent on is at most
RECEIVING_BYTES, and 36 MiB for each open gate (4 MiB received in its reserve, 32 MiB in the reader's line).
"""

from __future__ import annotations

RECEIVING_BYTES = 128 * 2**20
RESERVED_BYTES = 4 * 2**20  # sixteen places of bodies up to LARGE_BYTES: a gate's own, whatever the others hold
RECEIVE_SECONDS = 30.0


class Full(Exception):
    """Receiving more of a body would pass a bound on the bytes received at once: the request is refused, to be
    retried."""


class Intake:
    """The bytes of request bodies the worker process is receiving past each gate's reserve (touched on the gateway's
    loop only), and how long a body may take to arrive."""

    def __init__(
        self, limit: int = RECEIVING_BYTES, reserve: int = RESERVED_BYTES, seconds: float = RECEIVE_SECONDS
    ) -> None:
        self.limit, self.reserve, self.seconds = limit, reserve, seconds
        self.receiving = 0

    def take(self, gate_receiving: int, size: int) -> None:
        """A gate receiving `gate_receiving` bytes receives `size` more: count what passes its reserve, or raise Full
        past the limit."""
        counted = self._past_reserve(gate_receiving + size) - self._past_reserve(gate_receiving)
        if self.receiving + counted > self.limit:
            raise Full(f"{self.limit // 2**20} MiB of request bodies are already being received")
        self.receiving += counted

    def give_back(self, gate_receiving: int, size: int) -> None:
        """A gate receiving `gate_receiving` bytes no longer receives `size` of them (a body whole, refused or cut)."""
        self.receiving -= self._past_reserve(gate_receiving) - self._past_reserve(gate_receiving - size)

    def _past_reserve(self, gate_receiving: int) -> int:
        return max(0, gate_receiving - self.reserve)
