"""Attempts that stall large bodies at the process's intake cannot keep another attempt's ordinary call waiting: the
bytes being received past the gates' reserves are shared fairly, and whoever holds more than its share loses a body to
whoever asks for no more than its share (workers/gateway/intake.py).

The hostile senders are real HTTP clients, each on a thread, sending most of a large body and then waiting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import httpx

from db.engine import Database
from db.migrate import upgrade
from tests.gateway.conftest import Attempt, gate_key, new_attempt, open_gate, wait_until
from tests.gateway.upstream import Upstream
from workers.gateway.intake import CUT, RECEIVING_BYTES, Body, Full, Intake
from workers.gateway.server import GatewayGate, ModelGateway

MiB = 2**20


def _chat(size: int) -> bytes:
    """A chat call's body of exactly `size` bytes."""
    shell = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": ""}]})
    return json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (size - len(shell))}]}
    ).encode()


def _another_attempt(tmp_path: Path, name: str) -> Attempt:
    database = Database(f"sqlite:///{tmp_path / name}.db")
    upgrade(database)
    return new_attempt(database)


class _Stalling(threading.Thread):
    """An HTTP client that sends the first `sent` bytes of `body`, waits until released, then sends the rest."""

    def __init__(self, gate: GatewayGate, body: bytes, sent: int, released: threading.Event) -> None:
        super().__init__(daemon=True)
        self.gate, self.body, self.sent, self.released = gate, body, sent, released
        self.answer: str = "none"

    def _sending(self) -> Iterator[bytes]:
        for start in range(0, self.sent, MiB):
            yield self.body[start : min(start + MiB, self.sent)]
        self.released.wait(120)
        yield self.body[self.sent :]

    def run(self) -> None:
        headers = gate_key(self.gate) | {"Content-Length": str(len(self.body))}
        with httpx.Client(base_url=self.gate.url, trust_env=False, timeout=120) as client:
            try:
                answer = client.post("/openai/chat/completions", content=self._sending(), headers=headers)
            except httpx.HTTPError as error:  # the gateway closed the connection before the rest was sent
                self.answer = f"closed: {type(error).__name__}"
            else:
                self.answer = f"{answer.status_code} {answer.json().get('error', {}).get('message', '')}".strip()


def test_an_ordinary_call_is_served_while_stalled_attempts_hold_the_whole_intake(
    gateway: ModelGateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.seen.clear()
    released = threading.Event()
    # Four attempts hold 8 MiB of each of four 9 MiB bodies (32 MiB, their largest), a fifth 10 MiB of each of two
    # 11 MiB bodies: past their reserves, exactly the process's 128 MiB, stalled until released.
    plan = [(4, 9 * MiB, 8 * MiB)] * 4 + [(2, 11 * MiB, 10 * MiB)]
    with ExitStack() as gates:
        hostile = [
            gates.enter_context(open_gate(gateway, upstream, _another_attempt(tmp_path, f"h{n}"))) for n in range(5)
        ]
        honest = gates.enter_context(open_gate(gateway, upstream, _another_attempt(tmp_path, "honest")))
        intake = gateway.intake()  # the listener's, started by the first gate
        senders = []
        for gate, (count, size, sent) in zip(hostile, plan, strict=True):
            body = _chat(size)
            senders += [_Stalling(gate, body, sent, released) for _ in range(count)]
            for sender in senders[-count:]:
                sender.start()
            wait_until(lambda: gate.handler.receiving == count * sent, "the stalled bodies never arrived")  # noqa: B023
        assert intake.receiving == RECEIVING_BYTES
        try:
            with httpx.Client(base_url=honest.url, trust_env=False, timeout=120) as client:
                usual = client.post("/openai/chat/completions", content=_chat(8 * MiB), headers=gate_key(honest))
            served_while_stalled = [sender.answer for sender in senders]
        finally:
            released.set()
            for sender in senders:
                sender.join(120)
        assert usual.status_code == 200 and usual.json()["choices"]
        # When the ordinary call was answered, no stalled body had passed its deadline: each was still being received,
        # or had been cut to make room for it (and answered at once, 503, to be retried).
        assert set(served_while_stalled) <= {"none", f"503 fleet gateway: {CUT}; retry"}
        cut = [sender for sender in senders if sender.answer != "200"]
        assert 1 <= len(cut) < len(senders)
        assert all(sender.answer.startswith(("503", "closed")) for sender in cut)
        for gate in (*hostile, honest):
            wait_until(lambda: gate.handler.in_flight == 0, "a place was never freed")  # noqa: B023
        assert intake.receiving == 0
    upstream.seen.clear()


def _receiving(intake: Intake, gate: str, size: int, cut: list[str]) -> Body:
    """A body of the gate that received `size` bytes, a MiB at a time; its gate's name is added to `cut` if it is."""
    body = intake.begin(gate, lambda: cut.append(gate))
    for _ in range(size // MiB):
        intake.take(body, MiB)
    return body


def test_a_gate_within_its_share_is_never_cut_for_one_that_asks_for_more() -> None:
    intake, cut = Intake(), list[str]()
    bodies = [_receiving(intake, f"hostile {gate}", 8 * MiB, cut) for gate in range(4) for _ in range(4)]
    bodies += [_receiving(intake, "hostile 4", 10 * MiB, cut) for _ in range(2)]
    assert intake.receiving == RECEIVING_BYTES and cut == []
    honest = _receiving(intake, "honest", 10 * MiB, cut)  # 6 MiB past its reserve
    assert intake.of("honest") == 10 * MiB and cut == ["hostile 0"]  # the first of the largest holders lost a body
    # The stalled attempts come back and ask for more, again and again: they only ever cut each other's bodies (the
    # largest holder's), never the gate that holds less than they would.
    for again in range(40):
        with suppress(Full):
            bodies.append(_receiving(intake, f"hostile {again % 5}", 8 * MiB, cut))
        assert intake.receiving <= RECEIVING_BYTES
    assert "honest" not in cut and not honest.cut and intake.of("honest") == 10 * MiB
    assert len(cut) > 1
    for body in [*bodies, honest]:
        intake.end(body)
    assert intake.receiving == 0 and intake.of("honest") == 0
