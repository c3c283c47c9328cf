"""An agent that attacks its own gate: a path that would go out as another, a burst of calls at a nearly spent
budget, a body too large to hold, a client that turns its usage report off, a model with no price, more calls at
once than a gate serves. Each is refused or metered; none reaches the provider unmetered."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from db import queries
from tests.gateway.conftest import CHAT, PRICES, SLOW, Attempt, gate_key, held, in_flight, new_attempt, open_gate
from tests.gateway.upstream import BILLED, Upstream
from workers.gateway.handler import MAX_CALLS_AT_ONCE, MAX_REQUEST_BYTES
from workers.gateway.server import GatewayGate, ModelGateway


def _calls(attempt: Attempt) -> list[Any]:
    with attempt.written().session() as s:
        return list(queries.model_calls(s, attempt.attempt_id))


def _recorded(attempt: Attempt, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(_calls(attempt)) < count:
        assert time.monotonic() < deadline, "the calls were never all recorded"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "path",
    [
        "/openai/chat/completions%3Fx=/count_tokens",  # `?`: judged a token count, sent as a chat completion
        "/anthropic/v1/messages%23/count_tokens",  # `#`: the same through a fragment
        "/openai/fine_tuning/jobs%3Fx=/count_tokens",  # anything else the real key can do
        "/openai/..%2F..%2Fadmin",  # out of the upstream's path prefix
        "/openai/%2e%2e/%2e%2e/x",
        "/openai/chat%252Fcompletions",  # an escape the outgoing URL would read again
        "/openai/chat\\completions",
    ],
)
def test_a_path_that_would_go_out_as_another_is_refused(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream, path: str
) -> None:
    answer = agent.post(path, json=CHAT, headers=gate_key(gate))
    assert answer.status_code == 403 and "is not a model API path" in answer.json()["error"]["message"]
    assert upstream.seen == [] and _calls(attempt) == []


def test_model_routes_and_model_names_still_pass(agent: httpx.Client, gate: GatewayGate, upstream: Upstream) -> None:
    flash = "/gemini/v1beta/models/gemini-2.0-flash-001:generateContent"
    gemini = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert agent.post(flash, json=gemini, headers={"x-goog-api-key": gate.key}).status_code == 200
    assert agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate)).status_code == 200
    assert [urlsplit(seen.path).path for seen in upstream.seen] == [
        "/v1beta/models/gemini-2.0-flash-001:generateContent",
        "/v1/chat/completions",
    ]


def test_a_burst_of_calls_cannot_all_pass_a_nearly_spent_budget(
    gateway: ModelGateway, upstream: Upstream, db: Any
) -> None:
    upstream.seen.clear()
    attempt = new_attempt(db, budget_usd=0.01)  # a call in flight holds about $0.0103 of it
    with (
        open_gate(gateway, upstream, attempt, budget_usd=0.01, prices=PRICES) as gate,
        httpx.Client(base_url=gate.url, timeout=30) as agent,
    ):
        with in_flight(agent, gate):
            burst = [agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate)) for _ in range(5)]
        assert {answer.status_code for answer in burst} == {402}
        assert "held by calls in flight" in burst[0].json()["error"]["message"]
        _recorded(attempt, 6)  # the first, cut as the agent hung up, and the five refused
        again = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    assert len(upstream.seen) == 1  # only the first call reached the provider
    assert again.status_code == 402 and "held by calls in flight" not in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("limit", "second"),
    [({"max_tokens": 2000}, 402), ({"max_tokens": 500}, 200), ({}, 402), ({"max_tokens": "2000"}, 402)],
)
def test_a_call_in_flight_holds_the_output_its_request_allows(
    gateway: ModelGateway, upstream: Upstream, db: Any, limit: dict[str, Any], second: int
) -> None:
    # The budget ($0.016) fits one call at 2,000 output tokens ($0.02 at $10 a million), not two; a call at 500 holds
    # $0.005 and the second still fits. A call that names no limit holds 32,768 tokens: leaving it out, or writing
    # it as a string the provider reads, holds no less.
    attempt = new_attempt(db, budget_usd=0.016)
    with (
        open_gate(gateway, upstream, attempt, budget_usd=0.016, prices=PRICES) as gate,
        httpx.Client(base_url=gate.url, timeout=30) as agent,
        in_flight(agent, gate, SLOW | limit),
    ):
        answer = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    assert answer.status_code == second
    if second == 402:
        held = "0.3277" if not limit else "0.0201"  # 32,768 output tokens, or the 2,000 the call named
        assert answer.json()["error"]["message"] == (
            f"fleet gateway: the ticket's budget of $0.02 ran out mid-attempt ($0.0000 spent, ${held} held by calls"
            " in flight for their input and output limits)"
        )


@pytest.mark.parametrize(("model", "second"), [("slow-usage/gpt-5", 402), ("slow-usage", 200)])
def test_a_call_that_names_no_output_limit_holds_its_models_most_output(
    gateway: ModelGateway, upstream: Upstream, db: Any, model: str, second: int
) -> None:
    # gpt-5 (`slow-usage/gpt-5` is priced and known as gpt-5) writes up to 128,000 tokens: $1.28 at $10 a million, past
    # the $0.50 budget. A model whose most is not known holds 32,768 ($0.33) and the second call still fits.
    attempt = new_attempt(db, budget_usd=0.5)
    with (
        open_gate(gateway, upstream, attempt, budget_usd=0.5, prices=PRICES) as gate,
        httpx.Client(base_url=gate.url, timeout=30) as agent,
        in_flight(agent, gate, SLOW | {"model": model}),
    ):
        answer = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    assert answer.status_code == second
    if second == 402:
        assert answer.json()["error"]["message"] == (
            "fleet gateway: the ticket's budget of $0.50 ran out mid-attempt ($0.0000 spent, $1.2800 held by calls"
            " in flight for their input and output limits)"
        )


def test_a_body_over_the_limit_is_refused_before_it_is_read(gate: GatewayGate, upstream: Upstream) -> None:
    port = gate.port
    declared = f"Content-Length: {4 * MAX_REQUEST_BYTES}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(_head(gate, declared))  # and no body: the answer may not wait for one
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(_head(gate, b"Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (2**20, b"x" * 2**20)
        for _ in range(MAX_REQUEST_BYTES // 2**20 + 1):  # a MiB at a time, past the limit, never ended
            conn.sendall(chunk)
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")  # the gateway stopped reading at its limit
    assert upstream.seen == []


def _head(gate: GatewayGate, framing: bytes) -> bytes:
    return (
        b"POST /openai/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {gate.key}\r\n".encode()
        + framing
        + b"\r\n"
    )


def test_a_client_that_turns_its_usage_off_is_charged_what_the_provider_billed(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    body = CHAT | {"stream": True, "stream_options": {"include_usage": False}}
    answer = agent.post("/openai/chat/completions", json=body, headers=gate_key(gate))
    assert upstream.seen[-1].body["stream_options"] == {"include_usage": True}
    assert '"choices": []' not in answer.text  # the client gets the stream it asked for
    [call] = _calls(attempt)
    assert (call.input_tokens, call.output_tokens, call.error) == (*BILLED["openai-chat"][:2], None)


def test_with_a_budget_a_model_without_a_price_is_refused_before_it_is_called(
    gateway: ModelGateway, upstream: Upstream, db: Any
) -> None:
    upstream.seen.clear()
    attempt = new_attempt(db, budget_usd=5.0)
    with (
        open_gate(gateway, upstream, attempt, budget_usd=5.0) as gate,
        httpx.Client(base_url=gate.url) as agent,
    ):
        refused = agent.post("/openai/chat/completions", json=CHAT | {"model": "gpt-5-pro"}, headers=gate_key(gate))
        priced = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    message = refused.json()["error"]["message"]
    assert refused.status_code == 402 and "'gpt-5-pro' has no price" in message and "model_prices" in message
    assert priced.status_code == 200 and len(upstream.seen) == 1


def test_more_calls_at_once_than_a_gate_serves_are_asked_to_retry(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt
) -> None:
    with ExitStack() as calls:
        for _ in range(MAX_CALLS_AT_ONCE):
            calls.enter_context(in_flight(agent, gate))
        over = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    assert over.status_code == 429 and over.headers["retry-after"] == "1"
    _recorded(attempt, MAX_CALLS_AT_ONCE)  # each cut as the agent hung up
    assert agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate)).status_code == 200
    _recorded(attempt, MAX_CALLS_AT_ONCE + 1)


def _at_once(gate: GatewayGate, calls: int) -> list[int]:
    """Slow streams sent together (a barrier releases them), each read to its end: their statuses."""
    start, statuses = threading.Barrier(calls), list[int]()

    def one() -> None:
        with httpx.Client(base_url=gate.url, timeout=60) as client:
            start.wait()
            with client.stream("POST", "/openai/chat/completions", json=SLOW, headers=gate_key(gate)) as answer:
                statuses.append(answer.status_code)
                answer.read()

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_calls_sent_at_the_same_moment_are_held_and_capped_as_they_arrive(
    gateway: ModelGateway, upstream: Upstream, db: Any
) -> None:
    # Calls arriving together are admitted one at a time, each counting what those before it hold.
    upstream.seen.clear()
    attempt = new_attempt(db, budget_usd=0.01)  # one call in flight holds about all of it
    with open_gate(gateway, upstream, attempt, budget_usd=0.01, prices=PRICES) as gate:
        statuses = _at_once(gate, 30)
        assert (gate.handler.in_flight, held(gate)) == (0, 0.0)
    assert statuses.count(200) == 1 and set(statuses) == {200, 402, 429} and len(upstream.seen) == 1  # 429: 16 waited


def test_calls_sent_at_the_same_moment_past_the_cap_are_asked_to_retry(
    gateway: ModelGateway, upstream: Upstream, attempt: Attempt
) -> None:
    with open_gate(gateway, upstream, attempt, prices=PRICES) as gate:
        capped = _at_once(gate, MAX_CALLS_AT_ONCE + 8)
    assert sorted(capped) == [200] * MAX_CALLS_AT_ONCE + [429] * 8
