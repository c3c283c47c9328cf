"""Large request bodies are read off the gateway's loop, in its reader child, and only so many bytes at once: an agent
sending 30 MiB bodies does not hold the other agents' calls, and cannot pile up bodies without bound.

The child is tests/gateway/held_reader.py's: it reads a body naming a file in `hold_until` only once the file exists,
so a test knows the body is still being read while it makes its other calls (an order, not a timing)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from db import queries
from db.engine import Database
from db.migrate import upgrade
from tests.gateway.conftest import Attempt, gate_key, new_attempt, open_gate, wait_until
from tests.gateway.held_reader import HELD_COMMAND, held_read
from tests.gateway.upstream import Upstream
from workers.gateway.handler import MAX_REQUEST_BYTES
from workers.gateway.reader import Reader
from workers.gateway.reading import read_request
from workers.gateway.server import GatewayGate, ModelGateway
from workers.gateway.sse import Event, EventSplitter
from workers.gateway.usage import Wire

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}
MiB = 2**20


def _gateway(waiting_limit: int) -> Iterator[ModelGateway]:
    gateway = ModelGateway(lambda: Reader(HELD_COMMAND, held_read, waiting_limit))
    yield gateway
    gateway.close()


@pytest.fixture
def gateway() -> Iterator[ModelGateway]:
    yield from _gateway(64 * MiB)


@pytest.fixture
def small_gateway() -> Iterator[ModelGateway]:
    """A gateway whose reader takes 3 MiB of large bodies at once."""
    yield from _gateway(3 * MiB)


def _held(hold: Path, size: int, extra: str = "", **fields: Any) -> str:
    """A chat request of about `size` bytes that the reader child reads only once `hold` exists."""
    content = "x" * size + extra
    return json.dumps({"hold_until": str(hold)} | CHAT | fields | {"messages": [{"role": "user", "content": content}]})


def _posting(gate: GatewayGate, body: bytes | str) -> tuple[threading.Thread, list[httpx.Response]]:
    """The call under way on a thread of its own; its answer lands in the list."""
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=gate.url, timeout=120, trust_env=False) as client:
            answers.append(client.post("/openai/chat/completions", content=body, headers=gate_key(gate)))

    thread = threading.Thread(target=post)
    thread.start()
    return thread, answers


def _small_call(gate: GatewayGate) -> httpx.Response:
    with httpx.Client(base_url=gate.url, timeout=30, trust_env=False) as client:
        return client.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))


def test_a_small_call_is_served_while_another_agents_30_mib_body_is_being_read(
    gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    upstream.seen.clear()
    hostile, other = new_attempt(db), _another_attempt(tmp_path)
    hold = tmp_path / "let-it-be-read"
    with open_gate(gateway, upstream, hostile) as big, open_gate(gateway, upstream, other) as small:
        body = _held(hold, 30 * MiB, extra=big.key, stream=True)  # its own key in it: stored redacted
        thread, answers = _posting(big, body)
        wait_until(hold.with_suffix(".reading").exists, "the large body was never read")
        served = _small_call(small)  # were the 30 MiB read on the loop, this call would wait for the file
        assert served.status_code == 200 and thread.is_alive() and answers == []
        # The large call is still being read: it has its place among the gate's, but holds no budget, sent nothing.
        assert (big.handler.in_flight, big.handler.held) == (1, 0.0)
        assert [seen.body["messages"] for seen in upstream.seen] == [CHAT["messages"]]
        hold.touch()
        thread.join()
        [call] = _calls(hostile)
    [answer] = answers
    assert answer.status_code == 200 and '"choices": []' not in answer.text  # the usage chunk kept from it
    sent = upstream.seen[-1].body
    assert sent["stream_options"] == {"include_usage": True} and len(sent["messages"][0]["content"]) > 30 * MiB
    assert (call.status, call.error, call.input_tokens) == (200, None, 1200)  # what the provider billed
    assert "characters left out" in call.request and big.key not in call.request and "[redacted]" in call.request
    on_the_loop = read_request("openai", "chat/completions", Wire.CHAT, body.encode(), big.handler.secrets)
    assert call.request == on_the_loop.record  # the child reads a body as the loop would
    upstream.seen.clear()


def _another_attempt(tmp_path: Path) -> Attempt:
    """An attempt of another ticket, in a database of its own."""
    database = Database(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(database)
    return new_attempt(database)


def _calls(attempt: Attempt) -> list[Any]:
    with attempt.written().session() as s:
        return list(queries.model_calls(s, attempt.attempt_id))


def test_past_the_bytes_the_reader_takes_at_once_a_large_body_is_refused_to_be_retried(
    small_gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    hold = tmp_path / "let-it-be-read"
    with (
        open_gate(small_gateway, upstream, new_attempt(db)) as first,
        open_gate(small_gateway, upstream, _another_attempt(tmp_path)) as second,
    ):
        thread, answers = _posting(first, _held(hold, 2 * MiB))
        wait_until(hold.with_suffix(".reading").exists, "the large body was never read")
        refused = _posting(second, _held(hold, 2 * MiB))
        refused[0].join()
        [busy] = refused[1]
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        message = busy.json()["error"]["message"]
        assert message == "fleet gateway: 3 MiB of large request bodies are already being read; retry"
        assert _small_call(second).status_code == 200  # small bodies are read at once, past any queue
        hold.touch()
        thread.join()
        again = _posting(second, _held(hold, 2 * MiB))
        again[0].join()
    assert answers[0].status_code == 200 and again[1][0].status_code == 200
    upstream.seen.clear()


def test_one_agent_cannot_take_the_whole_queue_of_large_bodies(
    gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    hold = tmp_path / "let-it-be-read"
    with (
        open_gate(gateway, upstream, new_attempt(db)) as hostile,
        open_gate(gateway, upstream, _another_attempt(tmp_path)) as other,
    ):
        held = _posting(hostile, _held(hold, MAX_REQUEST_BYTES // 2 + MiB))
        wait_until(hold.with_suffix(".reading").exists, "the large body was never read")
        more = _posting(hostile, _held(hold, MAX_REQUEST_BYTES // 2 + MiB))
        more[0].join()
        queued = _posting(other, _held(hold, MAX_REQUEST_BYTES // 2 + MiB))  # waits its turn, not refused
        wait_until(lambda: gateway.reader().waiting > MAX_REQUEST_BYTES, "the other agent's body never queued")
        hold.touch()
        for thread, _ in (held, queued):
            thread.join()
    [refused] = more[1]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "this attempt's large request bodies already being read reach 32 MiB" in refused.json()["error"]["message"]
    assert held[1][0].status_code == 200 and queued[1][0].status_code == 200
    upstream.seen.clear()


def test_events_are_cut_at_their_ends_wherever_the_stream_splits_its_chunks() -> None:
    # The splitter searches each chunk from where the last search ended: an end split across chunks is still found.
    stream = b'event: a\ndata: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: {"x": 4}\n\n: comment\n\ndata: tail'
    whole = [(event.name, event.data) for event in _split([stream])]
    assert whole == [("a", "1"), ("", "2"), ("", "3"), ("", '{"x": 4}'), ("", ""), ("", "tail")]
    for size in range(1, 8):
        chunks = [stream[at : at + size] for at in range(0, len(stream), size)]
        assert [(event.name, event.data) for event in _split(chunks)] == whole
        assert b"".join(event.raw for event in _split(chunks)) == stream


def _split(chunks: list[bytes]) -> list[Event]:
    splitter = EventSplitter()
    return [event for chunk in chunks for event in splitter.feed(chunk)] + list(splitter.flush())


def test_the_reader_child_is_out_of_reach_of_the_workers_ctrl_c() -> None:
    """The terminal sends Ctrl-C to its foreground process group: the worker stops gently, and a call's large body
    in the reader must still be read (the child died of it, and the call got a 503)."""

    async def read_one() -> tuple[int, int]:
        reader = Reader()
        try:
            body = json.dumps(CHAT | {"messages": [{"role": "user", "content": "x" * MiB}]}).encode()
            asked = await reader.read("openai", "chat/completions", Wire.CHAT, body, ())
            assert asked.model == "gpt-4o" and reader._child is not None
            return os.getpgid(reader._child.pid), os.getsid(reader._child.pid)
        finally:
            await reader.close()

    group, session = asyncio.run(read_one())
    assert group != os.getpgid(0) and session != os.getsid(0)
