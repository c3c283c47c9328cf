"""An agent that opens many connections and sends each body slowly: a gate takes at most MAX_CALLS_AT_ONCE bodies at
once (a call's place is taken before its body is read), and the bytes being received at once are bounded for a gate
and for the whole worker process. Every place is freed, once, however its call ends.

The connections are raw sockets: the headers, part of a body, then a wait (no client library sends half a body)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from db.engine import Database
from db.migrate import upgrade
from tests.gateway.conftest import Attempt, gate_key, held, new_attempt, open_gate, wait_until
from tests.gateway.upstream import Upstream
from workers.gateway.handler import MAX_CALLS_AT_ONCE, MAX_REQUEST_BYTES
from workers.gateway.intake import Intake
from workers.gateway.server import GatewayGate, ModelGateway

MiB = 2**20
PART = 4096  # of each body, sent before the sender stalls


def _chat(size: int) -> bytes:
    """A chat call's body of exactly `size` bytes."""
    shell = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": ""}]})
    return json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (size - len(shell))}]}
    ).encode()


def _head(gate: GatewayGate, framing: str) -> bytes:
    return (
        "POST /openai/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {gate.key}\r\n{framing}\r\n\r\n"
    ).encode()


def _sending(gate: GatewayGate, body: bytes, sent: int = PART) -> socket.socket:
    """A connection that sent the headers and the first `sent` bytes of `body`, and waits."""
    conn = socket.create_connection(("127.0.0.1", gate.port), timeout=30)
    conn.sendall(_head(gate, f"Content-Length: {len(body)}") + body[:sent])
    return conn


def _status(conn: socket.socket) -> tuple[int, bytes]:
    """The answer's status, and its head and body (lowercase)."""
    answer = b""
    while b"\r\n\r\n" not in answer and (more := conn.recv(65536)):
        answer += more
    head, _, body = answer.lower().partition(b"\r\n\r\n")
    declared = re.search(rb"content-length: (\d+)", head)
    length = int(declared[1]) if declared else 0
    while len(body) < length and (more := conn.recv(65536)):
        body += more.lower()
    return int(answer.split()[1]), head + b"\r\n\r\n" + body


def _all_free(gate: GatewayGate, intake: Intake) -> None:
    """No place taken, nothing held or being received: exactly, not just below the limits."""
    wait_until(lambda: gate.handler.in_flight == 0, "a place was never freed")
    assert (gate.handler.in_flight, held(gate), gate.handler.receiving, intake.receiving) == (0, 0.0, 0, 0)


def _started(gate: GatewayGate, calls: int) -> None:
    """Wait until the gateway serves `calls` requests of the gate (each has sent its headers)."""
    wait_until(lambda: sum(not task.done() for task in gate.requests) == calls, "the calls never reached the gateway")


def test_the_seventeenth_call_of_a_gate_is_refused_before_its_body_is_read(
    gateway: ModelGateway, gate: GatewayGate, upstream: Upstream
) -> None:
    body = _chat(MiB)
    with ExitStack() as stack:
        senders = [stack.enter_context(_sending(gate, body)) for _ in range(MAX_CALLS_AT_ONCE)]
        _started(gate, MAX_CALLS_AT_ONCE)
        with _sending(gate, body) as over:  # its headers and 4 KiB of its 1 MiB
            status, head = _status(over)  # without a place, the gateway would wait for the rest of its body
        assert status == 429 and b"retry-after: 1" in head and b"at most 16 model calls of an attempt" in head
        assert (gate.handler.in_flight, gate.handler.receiving) == (MAX_CALLS_AT_ONCE, MAX_CALLS_AT_ONCE * PART)
        assert upstream.seen == []  # the 16 are still sending
        for sender in senders:
            sender.sendall(body[PART:])
        assert [_status(sender)[0] for sender in senders] == [200] * MAX_CALLS_AT_ONCE
    _all_free(gate, gateway.intake())
    assert len(upstream.seen) == MAX_CALLS_AT_ONCE
    upstream.seen.clear()


def test_a_calls_place_is_freed_once_however_its_body_ends(
    gateway: ModelGateway, gate: GatewayGate, upstream: Upstream
) -> None:
    body = _chat(MiB)
    with ExitStack() as stack:
        sent = [stack.enter_context(_sending(gate, body)) for _ in range(MAX_CALLS_AT_ONCE - 2)]
        greedy = stack.enter_context(socket.create_connection(("127.0.0.1", gate.port), timeout=30))
        greedy.sendall(_head(gate, "Transfer-Encoding: chunked"))
        large = stack.enter_context(socket.create_connection(("127.0.0.1", gate.port), timeout=30))
        large.sendall(_head(gate, f"Content-Length: {MAX_REQUEST_BYTES + 1}"))
        assert _status(large)[0] == 413  # too large, refused as declared: its place freed
        _started(gate, MAX_CALLS_AT_ONCE - 1)
        wait_until(lambda: gate.handler.receiving == PART * len(sent), "the bodies' first bytes were never received")
        share = MAX_REQUEST_BYTES - gate.handler.receiving  # what the gate may still be receiving at once
        greedy.sendall(b"%x\r\n" % (share + 1) + b"x" * (share + 1))  # one byte past the gate's share, never ended
        status, answer = _status(greedy)
        for cut in sent[:6]:
            cut.close()  # hung up mid-body
        for sender in sent[6:]:
            sender.sendall(body[PART:])
        assert status == 503 and b"this attempt's request bodies being received reach 32 mib; retry" in answer
        assert [_status(sender)[0] for sender in sent[6:]] == [200] * 8
    _all_free(gate, gateway.intake())
    with ExitStack() as stack:  # every place serves again: 16 at once
        again = [stack.enter_context(_sending(gate, body)) for _ in range(MAX_CALLS_AT_ONCE)]
        for sender in again:
            sender.sendall(body[PART:])
        assert [_status(sender)[0] for sender in again] == [200] * MAX_CALLS_AT_ONCE
    _all_free(gate, gateway.intake())
    upstream.seen.clear()


@pytest.fixture
def small_intake() -> Iterator[ModelGateway]:
    """A gateway that receives 3 MiB of bodies at once, for all its gates, none of them reserved to a gate."""
    gateway = ModelGateway(receiving=lambda: Intake(3 * MiB, reserve=0))
    yield gateway
    gateway.close()


def test_past_the_bytes_the_process_receives_at_once_a_body_is_refused_to_be_retried(
    small_intake: ModelGateway, upstream: Upstream, attempt: Attempt, tmp_path: Path
) -> None:
    body, half = _chat(2 * MiB + PART), 3 * MiB // 2
    with (
        open_gate(small_intake, upstream, attempt) as stalling,
        open_gate(small_intake, upstream, _another_attempt(tmp_path)) as other,
        _sending(stalling, body, half) as held,
    ):
        intake = small_intake.intake()  # the listener's, started by the first gate
        wait_until(lambda: intake.receiving == half, "the stalled body was never received")
        with _sending(other, body, half + 1) as refused:  # one byte past its share and what the process has left
            status, head = _status(refused)
        assert status == 503 and b"retry-after: 1" in head
        assert b"fleet gateway: 3 mib of request bodies are already being received; retry" in head
        assert (other.handler.in_flight, other.handler.receiving) == (0, 0)
        with httpx.Client(base_url=other.url, trust_env=False, timeout=30) as client:
            small = client.post("/openai/chat/completions", content=_chat(PART), headers=gate_key(other))
        assert small.status_code == 200  # what still fits is received
        held.sendall(body[half:])
        assert _status(held)[0] == 200
        _all_free(stalling, intake)
    upstream.seen.clear()


def _another_attempt(tmp_path: Path, name: str = "other") -> Attempt:
    """An attempt of another ticket, in a database of its own."""
    database = Database(f"sqlite:///{tmp_path / name}.db")
    upgrade(database)
    return new_attempt(database)


def test_attempts_stalled_at_the_process_intake_leave_the_other_attempts_calls_served(
    gateway: ModelGateway, upstream: Upstream, tmp_path: Path
) -> None:
    body, intake = _chat(3 * MiB), gateway.intake()
    with ExitStack() as gates:
        hostile = [
            gates.enter_context(open_gate(gateway, upstream, _another_attempt(tmp_path, f"h{n}"))) for n in range(4)
        ]
        honest = gates.enter_context(open_gate(gateway, upstream, _another_attempt(tmp_path)))
        with ExitStack() as senders:  # each hostile gate's 16 places, each with 2 MiB of a 3 MiB body, stalled
            for gate in hostile:
                for _ in range(MAX_CALLS_AT_ONCE):
                    senders.enter_context(_sending(gate, body, 2 * MiB))
            stalled = 4 * MAX_REQUEST_BYTES  # the process's whole 128 MiB: the process intake was first come
            wait_until(lambda: sum(gate.handler.receiving for gate in hostile) == stalled, "the bodies never arrived")
            with httpx.Client(base_url=honest.url, trust_env=False, timeout=30) as client:
                small = client.post("/openai/chat/completions", content=_chat(68), headers=gate_key(honest))
                usual = client.post("/openai/chat/completions", content=_chat(MiB), headers=gate_key(honest))
            assert (small.status_code, usual.status_code) == (200, 200)
        for gate in (*hostile, honest):
            _all_free(gate, intake)
    upstream.seen.clear()


@pytest.fixture
def short_deadline() -> Iterator[ModelGateway]:
    """A gateway that gives a body one second to arrive whole."""
    gateway = ModelGateway(receiving=lambda: Intake(seconds=1))
    yield gateway
    gateway.close()


def test_a_body_not_received_in_time_is_answered_408_and_gives_back_its_place_and_bytes(
    short_deadline: ModelGateway, upstream: Upstream, attempt: Attempt
) -> None:
    with (
        open_gate(short_deadline, upstream, attempt) as gate,
        _sending(gate, _chat(MiB)) as stalled,  # 4 KiB of its 1 MiB, then nothing
        _sending(gate, _chat(MiB), 0) as silent,  # its headers, then nothing
    ):
        for conn in (stalled, silent):
            status, answer = _status(conn)
            assert status == 408 and b"connection: close" in answer
            assert b"fleet gateway: the request's body did not arrive within 1 s" in answer
        _all_free(gate, short_deadline.intake())
        with httpx.Client(base_url=gate.url, trust_env=False, timeout=30) as client:
            assert (
                client.post("/openai/chat/completions", content=_chat(PART), headers=gate_key(gate)).status_code == 200
            )
    upstream.seen.clear()
