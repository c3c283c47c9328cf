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
from tests.gateway.conftest import Attempt, gate_key, held, new_attempt, open_gate, wait_until
from tests.gateway.held_reader import HELD_COMMAND, held_read
from tests.gateway.upstream import LARGE_ANSWER_BYTES, Upstream
from workers.gateway.handler import MAX_REQUEST_BYTES
from workers.gateway.reader import Reader
from workers.gateway.reading import read_request
from workers.gateway.server import GatewayGate, ModelGateway
from workers.gateway.sse import Event, EventSplitter
from workers.gateway.usage import Wire

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}
MiB = 2**20


LARGEST = MAX_REQUEST_BYTES - 64 * 2**10  # of a held body's text: the body is just under MAX_REQUEST_BYTES


def _gateway(wait_seconds: float) -> Iterator[ModelGateway]:
    gateway = ModelGateway(lambda: Reader(HELD_COMMAND, held_read, wait_seconds))
    yield gateway
    gateway.close()


@pytest.fixture
def gateway() -> Iterator[ModelGateway]:
    yield from _gateway(60.0)


@pytest.fixture
def impatient_gateway() -> Iterator[ModelGateway]:
    """A gateway whose large bodies wait at most a second for their turn in the reader."""
    yield from _gateway(1.0)


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
    hostile, other = new_attempt(db, budget_usd=10.0), _another_attempt(tmp_path)
    hold = tmp_path / "let-it-be-read"
    with (
        open_gate(gateway, upstream, hostile, budget_usd=10.0) as big,
        open_gate(gateway, upstream, other) as small,
    ):
        body = _held(hold, 30 * MiB, extra=big.key, stream=True)  # its own key in it: stored redacted
        thread, answers = _posting(big, body)
        wait_until(hold.with_suffix(".reading").exists, "the large body was never read")
        served = _small_call(small)  # were the 30 MiB read on the loop, this call would wait for the file
        assert served.status_code == 200 and thread.is_alive() and answers == []
        # The large call is still being read: it has its place among the gate's, but holds no budget, sent nothing.
        assert (big.handler.in_flight, held(big)) == (1, 0.0)
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


def test_a_small_call_is_served_while_another_agents_30_mib_answer_is_being_read(
    gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    upstream.seen.clear()
    hostile, other = new_attempt(db), _another_attempt(tmp_path)
    hold = tmp_path / "let-it-be-read"
    with open_gate(gateway, upstream, hostile) as big, open_gate(gateway, upstream, other) as small:
        thread, answers = _posting(big, json.dumps(CHAT | {"model": "large-answer", "answer_hold": str(hold)}))
        wait_until(hold.with_suffix(".reading").exists, "the large answer was never read off the loop")
        served = _small_call(small)  # were the 30 MiB read on the loop, this call would wait for the file
        assert served.status_code == 200 and thread.is_alive() and answers == []
        hold.touch()
        thread.join()
        [call] = _calls(hostile)
    [answer] = answers
    assert answer.status_code == 200 and len(answer.json()["choices"][0]["message"]["content"]) == LARGE_ANSWER_BYTES
    assert (call.status, call.error, call.input_tokens, call.output_tokens) == (200, None, 1200, 50)  # as billed
    assert call.model == "gpt-4o-2024-08-06" and "characters left out" in call.response
    upstream.seen.clear()


def _another_attempt(tmp_path: Path, name: str = "other") -> Attempt:
    """An attempt of another ticket, in a database of its own."""
    database = Database(f"sqlite:///{tmp_path / name}.db")
    upgrade(database)
    return new_attempt(database)


def _calls(attempt: Attempt) -> list[Any]:
    with attempt.written().session() as s:
        return list(queries.model_calls(s, attempt.attempt_id))


def test_a_large_body_waits_its_turn_while_two_agents_keep_the_reader_busy(
    gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    """Two hostile agents each keep one of the largest bodies in the reader and send the next as soon as it is read;
    an honest agent's large body takes its place in line between them, and is read in its turn."""
    first_hold, second_hold, honest_hold, again_hold = (tmp_path / name for name in ("a1", "b1", "h", "a2"))
    with (
        open_gate(gateway, upstream, new_attempt(db)) as first,
        open_gate(gateway, upstream, _another_attempt(tmp_path)) as second,
        open_gate(gateway, upstream, _another_attempt(tmp_path, "honest")) as honest,
    ):
        in_child = _posting(first, _held(first_hold, LARGEST))
        wait_until(first_hold.with_suffix(".reading").exists, "the first body was never read")
        in_line = _posting(second, _held(second_hold, LARGEST))
        wait_until(lambda: second.handler.reading > 0, "the second body never got in line")
        honest_call = _posting(honest, _held(honest_hold, MiB))
        wait_until(lambda: honest.handler.reading > 0 or bool(honest_call[1]), "the honest body never got in line")
        assert honest_call[1] == []  # in line behind 64 MiB of hostile bodies, not refused
        first_hold.touch()
        in_child[0].join()
        again = _posting(first, _held(again_hold, LARGEST))  # the first agent's next, at once
        wait_until(lambda: first.handler.reading > 0, "the first agent's next body never got in line")
        second_hold.touch()
        wait_until(lambda: honest_hold.with_suffix(".reading").exists(), "the honest body was never read")
        assert not again_hold.with_suffix(".reading").exists()  # it came after the honest body: it waits
        honest_hold.touch()
        again_hold.touch()
        for thread, _ in (in_line, honest_call, again):
            thread.join()
        wait_until(lambda: gateway.reader().waiting == 0, "a body never left the reader's line")
    answers = [in_child[1], in_line[1], honest_call[1], again[1]]
    assert [[answer.status_code for answer in each] for each in answers] == [[200]] * 4
    upstream.seen.clear()


def test_a_large_body_that_waits_too_long_for_its_turn_is_asked_to_retry(
    impatient_gateway: ModelGateway, upstream: Upstream, db: Database, tmp_path: Path
) -> None:
    hold = tmp_path / "let-it-be-read"
    with (
        open_gate(impatient_gateway, upstream, new_attempt(db)) as first,
        open_gate(impatient_gateway, upstream, _another_attempt(tmp_path)) as second,
    ):
        thread, answers = _posting(first, _held(hold, 2 * MiB))
        wait_until(hold.with_suffix(".reading").exists, "the large body was never read")
        refused = _posting(second, _held(hold, 2 * MiB))
        refused[0].join()
        [busy] = refused[1]
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        message = busy.json()["error"]["message"]
        assert message == "fleet gateway: a large request body waited 1 s for its turn to be read; retry"
        assert _small_call(second).status_code == 200  # small bodies are read at once, past any line
        hold.touch()
        thread.join()
        again = _posting(second, _held(hold, 2 * MiB))
        again[0].join()
        assert (second.handler.reading, impatient_gateway.reader().waiting) == (0, 0)
    assert answers[0].status_code == 200 and again[1][0].status_code == 200
    upstream.seen.clear()


def test_a_body_too_heavy_to_read_is_refused_and_the_next_is_read(
    gateway: ModelGateway, upstream: Upstream, db: Database
) -> None:
    """24 MiB of `{},` would take about 650 MB to read; a conversation of 200,000 messages in 32 MiB is read."""
    heavy = json.dumps(CHAT)[:-1].encode() + b', "tools": [' + b",".join([b"{}"] * (8 * MiB)) + b"]}"
    message = {"role": "user", "content": [{"type": "text", "text": "word " * 20}]}
    count = (MAX_REQUEST_BYTES - 1000) // len(json.dumps(message) + ", ")  # as many as 32 MiB hold
    ordinary = json.dumps(CHAT | {"stream": True, "messages": [message] * count})
    with open_gate(gateway, upstream, new_attempt(db)) as gate:
        refused = _posting(gate, heavy)
        refused[0].join()
        [too_heavy] = refused[1]
        assert too_heavy.status_code == 413 and too_heavy.headers["x-should-retry"] == "false"
        reason = too_heavy.json()["error"]["message"]
        assert reason == "fleet gateway: request refused: its JSON needs more than 512 MiB of memory to read"
        read = _posting(gate, ordinary)
        read[0].join()
    assert len(ordinary) > MAX_REQUEST_BYTES - MiB and read[1][0].status_code == 200
    assert len(upstream.seen[-1].body["messages"]) == count
    upstream.seen.clear()


def test_an_answer_too_heavy_to_read_is_passed_on_whole_and_charged_as_all_output(
    gateway: ModelGateway, upstream: Upstream, db: Database
) -> None:
    attempt = new_attempt(db)
    with open_gate(gateway, upstream, attempt) as gate:
        thread, answers = _posting(gate, json.dumps(CHAT | {"model": "heavy-answer"}))
        thread.join()
        [call] = _calls(attempt)
    [answer] = answers
    assert answer.status_code == 200 and len(answer.json()["logprobs"]) == 8 * MiB  # the agent gets it whole
    assert call.error == (
        "the answer could not be read: its JSON needs more than 512 MiB of memory to read;"
        " tokens estimated from the text (4 characters a token)"
    )
    assert (
        call.output_tokens == -(-len(answer.content) // 4)
        and call.response == f"[{len(answer.content)} bytes not stored]"
    )
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
