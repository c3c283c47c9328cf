"""How many bytes of request bodies the worker process's gateway is receiving at once, and for how long.

A body is read from its connection before anything else of its call is known (its model, its budget hold), and a
sender that stalls part-way would hold what it sent, and its call's place, for as long as it liked. So a body must
arrive whole within RECEIVE_SECONDS (else 408), and the bytes being received at once are bounded: for each gate
(MAX_REQUEST_BYTES) and for the whole process (RECEIVING_BYTES), so that stalled senders are refused (503, retry)
rather than held in memory without end.

Agents reach the gateway over loopback or their sandbox's relay: an honest body, even the largest (32 MiB), arrives in
well under a second, and RECEIVE_SECONDS leaves a loaded machine thirty times as long. A body that takes longer is a
stalled or trickling sender, holding its place and its bytes.

RECEIVING_BYTES is four of the largest bodies a gate takes: at least four attempts receive their largest body at once.
A gate's first RESERVED_BYTES being received never count against it: a long conversation is a few hundred KiB. Past
its reserve, the process's bytes are shared fairly, not first come: when they are all taken, a gate that needs more
makes room by cutting the largest body of the gate holding the most past its reserve, as long as that gate holds more
than the asking gate would once served (its body is answered 503, retry; what it still sends is not read). So the
bytes go to the gates asking in equal shares: whoever holds more than its share loses a body to whoever asks for no
more than its share, at once, and never the other way round: a body is never cut while its gate holds no more than
RECEIVING_BYTES shared among the gates receiving past their reserves (21 MiB each for six). A few stalled attempts
holding the whole of it, and coming back after each refusal, cannot keep another attempt's 10 MiB call waiting: it is
served while they wait. Waiting for room was not enough (a stalled body keeps its room until its deadline, and its
sender comes back as soon as it is answered), nor was cutting the stalled ones first (a sender trickling a byte a
second is never stalled).

With the reader's line (32 MiB a gate), what the gateway holds of bodies not yet sent on is at most RECEIVING_BYTES,
and 36 MiB for each open gate (4 MiB received in its reserve, 32 MiB in the reader's line).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass

MAX_REQUEST_BYTES = 32 * 2**20  # of a body, and of a gate's bodies being received at once
RECEIVING_BYTES = 128 * 2**20
RESERVED_BYTES = 4 * 2**20  # sixteen places of bodies up to LARGE_BYTES: a gate's own, whatever the others hold
RECEIVE_SECONDS = 30.0
CUT = "the request's body was cut short to make room for another attempt's"


class Full(Exception):
    """Receiving more of a body would pass a bound on the bytes received at once: the request is refused, to be
    retried."""


class TooLarge(Exception):
    """The request's body is over MAX_REQUEST_BYTES."""


class TooSlow(Exception):
    """The request's body did not arrive within the intake's deadline."""


class Cut(Full):
    """The body was cut short to make room for another gate's, which holds less: the request is refused, to be
    retried (what it still sends is not read)."""


@dataclass(eq=False)
class Body:
    """One body being received: its gate, how many of its bytes have arrived, and how to stop receiving it."""

    gate: Hashable
    stop: Callable[[], None]  # wakes the body's receiver, which then finds it cut
    size: int = 0
    cut: bool = False
    ended: bool = False


class Intake:
    """The bytes of request bodies the worker process is receiving past each gate's reserve (touched on the gateway's
    loop only), and how long a body may take to arrive."""

    def __init__(
        self, limit: int = RECEIVING_BYTES, reserve: int = RESERVED_BYTES, seconds: float = RECEIVE_SECONDS
    ) -> None:
        self.limit, self.reserve, self.seconds = limit, reserve, seconds
        self.receiving = 0  # past the gates' reserves
        self._bodies: dict[Hashable, list[Body]] = {}

    def of(self, gate: Hashable) -> int:
        """The bytes of the gate's bodies being received."""
        return sum(body.size for body in self._bodies.get(gate, ()))

    def begin(self, gate: Hashable, stop: Callable[[], None]) -> Body:
        """A body of the gate begins to arrive; `stop` is called (once) when it is cut to make room for another."""
        body = Body(gate, stop)
        self._bodies.setdefault(gate, []).append(body)
        return body

    def take(self, body: Body, size: int) -> None:
        """`size` more bytes of the body arrived: count what passes its gate's reserve, making room by cutting
        another gate's body where that gate holds more; raise Cut when the body itself was cut, Full when no room
        can be made."""
        if body.cut:
            raise Cut(CUT)
        gate = self.of(body.gate)
        counted = self._past_reserve(gate + size) - self._past_reserve(gate)
        while self.receiving + counted > self.limit:
            if not self._cut_for(body.gate, self._past_reserve(gate + size)):
                raise Full(f"{self.limit // 2**20} MiB of request bodies are already being received")
        self.receiving += counted
        body.size += size

    def end(self, body: Body) -> None:
        """The body is no longer being received (whole, refused or cut): give its bytes back. Safe to call twice."""
        if body.ended:
            return
        body.ended = True
        gate = self.of(body.gate)
        self.receiving -= self._past_reserve(gate) - self._past_reserve(gate - body.size)
        bodies = self._bodies[body.gate]
        bodies.remove(body)
        if not bodies:
            del self._bodies[body.gate]

    def _cut_for(self, asking: Hashable, would_hold: int) -> bool:
        """Cut the largest body of the gate holding the most past its reserve, when it holds more than `would_hold`
        (what the asking gate would hold past its own); False when none does."""
        others = [(self._past_reserve(self.of(gate)), gate) for gate in self._bodies if gate != asking]
        held, largest = max(others, key=lambda other: other[0], default=(0, None))
        if held <= would_hold or largest is None:
            return False
        victim = max(self._bodies[largest], key=lambda body: body.size)
        victim.cut = True
        self.end(victim)
        victim.stop()
        return True

    def _past_reserve(self, gate_receiving: int) -> int:
        return max(0, gate_receiving - self.reserve)


def waking(deadline: asyncio.Timeout) -> Callable[[], None]:
    """What makes the deadline of a body's receiver pass at once (its receiver waits for a chunk within it)."""

    def wake() -> None:
        if not deadline.expired():
            deadline.reschedule(-1.0)

    return wake


async def received(intake: Intake, gate: Hashable, stream: AsyncIterator[bytes], declared: str) -> bytes:
    """The body a request of the gate streams (`declared` its Content-Length, if any), read a chunk at a time and never
    held past MAX_REQUEST_BYTES (TooLarge), whole within the intake's deadline (TooSlow); while it is being received
    its bytes count against the gate's share and the process's intake (Full, or Cut when another gate's body needed
    its room)."""
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise TooLarge
    chunks, deadline = [], asyncio.timeout(intake.seconds)
    # Cut by another gate only while this one waits for a chunk, inside the deadline: it then wakes at once.
    body = intake.begin(gate, waking(deadline))
    try:
        async with deadline:
            async for chunk in stream:
                if body.size + len(chunk) > MAX_REQUEST_BYTES:
                    raise TooLarge
                if intake.of(gate) + len(chunk) > MAX_REQUEST_BYTES:  # one agent cannot fill the intake alone
                    raise Full(f"this attempt's request bodies being received reach {MAX_REQUEST_BYTES // 2**20} MiB")
                intake.take(body, len(chunk))
                chunks.append(chunk)
        if body.cut:  # cut as its last chunk arrived: its room is another's now
            raise Cut(CUT)
        return b"".join(chunks)
    except TimeoutError:
        if body.cut:
            raise Cut(CUT) from None
        raise TooSlow(f"the request's body did not arrive within {intake.seconds:g} s") from None
    finally:
        intake.end(body)
