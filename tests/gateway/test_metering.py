"""The gateway meters what the provider billed, for every protocol, JSON and streamed, side calls included; it
swaps the placeholder key for the real one and stores neither; it prices calls or says they are unpriced."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from db import queries
from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSettings, explain
from orchestrator.views import usage, usage_mismatch
from system.settings import Settings
from tests.gateway.conftest import Attempt, new_attempt, open_gate
from tests.gateway.upstream import BILLED, GOOD_KEY, LONG_TEXT, SLOW_USAGE_SECONDS, Upstream
from workers.gateway.attempt import agent_variables, key_failures, upstreams
from workers.gateway.prices import PriceError, find_price, max_output, price_table
from workers.gateway.protocols import Upstream as Route
from workers.gateway.reading import MAX_OUTPUT_TOKENS, read_request
from workers.gateway.server import GatewayGate, ModelGateway
from workers.gateway.usage import Wire
from workers.relay import parse_args

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}
RESPONSES = {"model": "gpt-5-codex", "input": "Say hello."}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
FLASH = "/gemini/v1beta/models/gemini-2.5-flash"

# (protocol, streamed): how each SDK sends it (path, body, where it puts its key).
REQUESTS: dict[tuple[str, bool], tuple[str, dict[str, Any], str]] = {
    ("openai-chat", False): ("/openai/chat/completions", CHAT, "bearer"),
    ("openai-chat", True): ("/openai/chat/completions", CHAT | {"stream": True}, "bearer"),
    ("openai-responses", False): ("/openai/responses", RESPONSES, "bearer"),
    ("openai-responses", True): ("/openai/responses", RESPONSES | {"stream": True}, "bearer"),
    ("anthropic-messages", False): ("/anthropic/v1/messages", MESSAGES, "x-api-key"),
    ("anthropic-messages", True): ("/anthropic/v1/messages", MESSAGES | {"stream": True}, "x-api-key"),
    ("gemini", False): (f"{FLASH}:generateContent", GEMINI, "x-goog-api-key"),
    ("gemini", True): (f"{FLASH}:streamGenerateContent?alt=sse", GEMINI, "x-goog-api-key"),
}


def send(
    agent: httpx.Client, gate: GatewayGate, path: str, body: dict[str, Any], where: str = "bearer"
) -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01"}
    if where == "bearer":
        headers["Authorization"] = f"Bearer {gate.key}"
    elif where == "query":
        path += ("&" if "?" in path else "?") + f"key={gate.key}"
    else:
        headers[where] = gate.key
    return agent.post(path, json=body, headers=headers)


def calls(attempt: Attempt) -> list[Any]:
    with attempt.written().session() as s:
        return list(queries.model_calls(s, attempt.attempt_id))


def totals(attempt: Attempt) -> tuple[int, int, float, int]:
    with attempt.written().session() as s:
        row = queries.get_attempt(s, attempt.attempt_id)
        return row.tokens_in, row.tokens_out, row.cost_usd, row.unpriced_calls


@pytest.mark.parametrize(("protocol", "streamed"), list(REQUESTS))
def test_the_usage_recorded_is_what_the_provider_billed(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, protocol: str, streamed: bool
) -> None:
    path, body, where = REQUESTS[(protocol, streamed)]
    answer = send(agent, gate, path, body, where)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream" if streamed else "application/json")
    [call] = calls(attempt)
    assert (call.protocol, call.streamed, call.status, call.error) == (protocol, streamed, 200, None)
    assert (call.input_tokens, call.output_tokens, call.cached_tokens) == BILLED[protocol]
    assert totals(attempt)[:2] == BILLED[protocol][:2]


def test_gemini_streams_without_sse_and_keys_in_the_query_are_metered(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    answer = send(agent, gate, f"{FLASH}:streamGenerateContent", GEMINI, "query")
    assert answer.status_code == 200 and isinstance(answer.json(), list)
    [call] = calls(attempt)
    assert (call.input_tokens, call.output_tokens, call.cached_tokens) == BILLED["gemini"]
    assert "key=" not in upstream.seen[-1].path  # the placeholder in the query went no further


def test_side_calls_are_metered_and_summed_into_the_attempt(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt
) -> None:
    send(agent, gate, "/anthropic/v1/messages", MESSAGES | {"stream": True}, "x-api-key")
    # Claude Code's background calls go to the Haiku tier on the same base URL; aider's weak model, opencode's
    # small_model and gemini-cli's utility roles likewise.
    send(agent, gate, "/anthropic/v1/messages", MESSAGES | {"model": "claude-haiku-4-5"}, "x-api-key")
    send(agent, gate, "/openai/chat/completions", CHAT | {"model": "gpt-4o-mini"})
    recorded = calls(attempt)
    assert [c.seq for c in recorded] == [1, 2, 3]
    tokens_in, tokens_out, cost, unpriced = totals(attempt)
    assert (
        tokens_in
        == sum(c.input_tokens for c in recorded)
        == 2 * BILLED["anthropic-messages"][0] + BILLED["openai-chat"][0]
    )
    assert tokens_out == sum(c.output_tokens for c in recorded)
    assert cost == pytest.approx(sum(c.cost_usd for c in recorded)) and cost > 0 and unpriced == 0


def test_a_chat_stream_is_asked_for_its_usage_and_the_client_gets_the_stream_it_asked_for(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    plain = send(agent, gate, "/openai/chat/completions", CHAT | {"stream": True})
    assert upstream.seen[-1].body["stream_options"] == {"include_usage": True}
    assert '"choices": []' not in plain.text and plain.text.rstrip().endswith("data: [DONE]")
    asked = send(
        agent, gate, "/openai/chat/completions", CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    )
    assert '"choices": []' in asked.text
    assert [(c.input_tokens, c.output_tokens) for c in calls(attempt)] == [BILLED["openai-chat"][:2]] * 2


def test_the_real_key_goes_upstream_and_is_never_given_to_the_agent_or_stored(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    for path, body, where in REQUESTS.values():
        send(agent, gate, path, {**body, "metadata": {"note": f"the agent echoes its key {gate.key}"}}, where)
    sent = [
        (seen.headers.get("authorization"), seen.headers.get("x-api-key"), seen.headers.get("x-goog-api-key"))
        for seen in upstream.seen
    ]
    assert all(GOOD_KEY in (auth or "") + (api or "") + (goog or "") for auth, api, goog in sent)
    assert all(gate.key not in json.dumps(seen.headers) + seen.path for seen in upstream.seen)
    assert GOOD_KEY not in json.dumps(agent_variables(gate.url, gate.key))
    stored = "".join(c.request + c.response + (c.error or "") for c in calls(attempt))
    assert GOOD_KEY not in stored and gate.key not in stored and "[redacted]" in stored


def test_a_request_without_the_attempts_key_is_refused_in_the_protocols_shape(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    answer = agent.post("/anthropic/v1/messages", json=MESSAGES, headers={"x-api-key": "fleet-guessed"})
    assert answer.status_code == 401
    assert answer.json()["type"] == "error" and "an open attempt's key" in answer.json()["error"]["message"]
    assert upstream.seen == [] and calls(attempt) == []


def test_a_key_the_provider_refuses_is_an_error_that_names_it(
    gateway: ModelGateway, upstream: Upstream, attempt: Attempt
) -> None:
    with open_gate(gateway, upstream, attempt, key="sk-revoked") as gate, httpx.Client(base_url=gate.url) as agent:
        answer = send(agent, gate, "/openai/chat/completions", CHAT)
    assert answer.status_code == 401 and "Incorrect API key" in answer.json()["error"]["message"]
    [call] = calls(attempt)
    assert call.status == 401 and call.cost_usd == 0.0
    reason = key_failures(gate.calls, gate.upstreams)
    assert reason is not None and "refused the API key (HTTP 401" in reason and "OPENAI_API_KEY" in reason
    assert "sk-revoked" not in reason


def test_calls_are_priced_per_million_tokens_with_cache_reads_and_writes(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt
) -> None:
    send(agent, gate, "/openai/chat/completions", CHAT)  # gpt-4o: 1000 plain + 200 cached in, 50 out
    send(agent, gate, "/anthropic/v1/messages", MESSAGES, "x-api-key")  # 100 plain, 2000 read, 500 written, 80 out
    chat, messages = calls(attempt)
    assert chat.cost_usd == pytest.approx((1000 * 2.5 + 200 * 1.25 + 50 * 10) / 1e6)
    assert messages.cost_usd == pytest.approx((100 * 3 + 2000 * 0.3 + 500 * 3.75 + 80 * 15) / 1e6)


@pytest.mark.parametrize(
    ("route", "wire", "body", "limit"),
    [
        ("anthropic/v1/messages", Wire.MESSAGES, {"max_tokens": 32000}, 32000),
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": 100, "max_completion_tokens": 4000}, 4000),
        ("openai/responses", Wire.RESPONSES, {"max_output_tokens": 8000}, 8000),
        ("gemini/v1beta/models/g:generateContent", Wire.GEMINI, {"generationConfig": {"maxOutputTokens": 900}}, 900),
        ("gemini/v1beta/models/g:generateContent", Wire.GEMINI, {"generation_config": {"max_output_tokens": 7}}, 7),
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": 10**400}, MAX_OUTPUT_TOKENS),  # priced, not overflown
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": True, "max_completion_tokens": "9"}, 9),
        (
            "gemini/v1beta/models/g:generateContent",
            Wire.GEMINI,
            {"generationConfig": {"max_output_tokens": "65536"}},
            65536,
        ),
        ("gemini/v1beta/models/g:generateContent", Wire.GEMINI, {"generation_config": {"maxOutputTokens": 64}}, 64),
        ("openai/responses", Wire.RESPONSES, {"max_output_tokens": 100000.0}, 100000),  # a whole float
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": "9" * 40}, MAX_OUTPUT_TOKENS),
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": 1.5, "max_completion_tokens": "1e9"}, None),
        ("openai/chat/completions", Wire.CHAT, {"max_tokens": True, "max_completion_tokens": "-9"}, None),
        ("openai/chat/completions", Wire.CHAT, {}, None),
    ],
)
def test_the_output_limit_a_call_holds_is_read_from_its_familys_field(
    route: str, wire: Wire, body: dict[str, Any], limit: int | None
) -> None:
    family, _, rest = route.partition("/")
    assert read_request(family, rest, wire, json.dumps(body).encode(), ()).output_tokens == limit


def test_a_model_without_a_price_is_recorded_as_unpriced_not_as_free(
    gateway: ModelGateway, upstream: Upstream, attempt: Attempt
) -> None:
    with open_gate(gateway, upstream, attempt, prices={}) as gate, httpx.Client(base_url=gate.url) as agent:
        send(agent, gate, "/openai/chat/completions", CHAT)
    [call] = calls(attempt)
    assert call.cost_usd is None and call.input_tokens == 1200
    assert totals(attempt) == (1200, 50, 0.0, 1)
    with attempt.db.session() as s:
        assert "1 unpriced call(s)" in usage(queries.get_attempt(s, attempt.attempt_id))


def test_price_overrides_win_in_order_and_snapshots_take_their_models_price() -> None:
    table = price_table(["gpt-4o=1/2"], ["gpt-4o=5/6/0.5", "my-local-model=0.1/0.2"])
    assert find_price(table, "openai/gpt-4o-2024-08-06") == find_price(table, "gpt-4o")
    assert (table["gpt-4o"].input, table["gpt-4o"].output, table["gpt-4o"].cached) == (5.0, 6.0, 0.5)
    assert find_price(table, "gpt-4o-mini") == table["gpt-4o-mini"]  # the longest name wins
    assert find_price(table, "My-Local-Model") is not None and find_price(table, "llama-3") is None
    for snapshot in ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest", "gemini-2.0-flash-001"):
        assert find_price(table, snapshot) == table[snapshot.rpartition("-")[0]]
    assert [find_price(table, m) for m in ("gpt-5-pro", "o3-pro", "claude-opus-4-5-20251101")] == [None] * 3
    with pytest.raises(PriceError, match="MODEL=INPUT/OUTPUT"):
        price_table(["gpt-4o=cheap"])


def test_the_most_output_a_model_writes_is_known_as_its_price_is() -> None:
    models = ("gpt-5", "openai/gpt-5-2025-08-07", "claude-3-5-haiku-latest", "gpt-4o", "gpt-5-pro", "house-model")
    assert [max_output(model) for model in models] == [128_000, 128_000, 8_192, 16_384, None, None]


def test_a_repositorys_price_that_is_not_a_price_is_one_line_naming_the_form() -> None:
    assert RepoSettings(model_prices=["my-model=0.5/1.5/0.05"]).model_prices == ["my-model=0.5/1.5/0.05"]
    with pytest.raises(ValidationError) as refused:
        RepoSettings(model_prices=["my-model=cheap"])
    assert explain(refused.value) == (
        "model_prices.0: is not MODEL=INPUT/OUTPUT[/CACHED] in USD per million tokens (gpt-4o=2.5/10/1.25) "
        "(got 'my-model=cheap')"
    )


def test_a_cli_report_more_than_one_percent_off_is_shown(attempt: Attempt) -> None:
    with attempt.db.session() as s:
        row = queries.get_attempt(s, attempt.attempt_id)
        row.tokens_in, row.tokens_out, row.cost_usd = 11356, 180, 0.0368
        row.reported_tokens_in, row.reported_tokens_out, row.reported_cost_usd = 11300, 180, 0.0368
        assert usage_mismatch(row) is None  # 0.5% off
        row.reported_tokens_in, row.reported_cost_usd = 5300, 0.02
        assert usage_mismatch(row) == "5300 in / 180 out, $0.0200"
        assert "(the agent reported 5300 in" in usage(row)


def test_the_relay_takes_the_ports_it_tunnels_to_the_gateway() -> None:
    assert parse_args(["s.sock", "0", "--forward", "41234", "--", "claude", "-p"]) == (
        "s.sock",
        0,
        ["claude", "-p"],
        [41234],
    )
    assert parse_args(["s.sock", "0", "--", "x"]) == ("s.sock", 0, ["x"], [])
    with pytest.raises(ValueError, match="usage"):
        parse_args(["s.sock", "0", "--forward", "x", "--", "cmd"])


def test_past_the_budget_calls_are_refused_in_the_protocols_shape_and_not_retried(
    gateway: ModelGateway, upstream: Upstream, db: Any
) -> None:
    upstream.seen.clear()
    attempt = new_attempt(db, budget_usd=0.001)
    with open_gate(gateway, upstream, attempt, budget_usd=0.001) as gate, httpx.Client(base_url=gate.url) as agent:
        assert send(agent, gate, "/openai/chat/completions", CHAT).status_code == 200  # $0.00325: now over
        refused = send(agent, gate, "/anthropic/v1/messages", MESSAGES | {"stream": True}, "x-api-key")
        gemini = send(agent, gate, f"{FLASH}:generateContent", GEMINI, "x-goog-api-key")
    assert refused.status_code == 402 and refused.headers["x-should-retry"] == "false"
    assert refused.json()["error"]["type"] == "billing_error"
    assert "budget of $0.00 ran out mid-attempt" in refused.json()["error"]["message"]
    assert gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert len(upstream.seen) == 1 and gate.refused is not None and "budget" in gate.refused
    assert [c.status for c in calls(attempt)] == [200, 402, 402]


def test_only_model_calls_and_reading_go_out_with_the_real_key(
    agent: httpx.Client, gate: GatewayGate, upstream: Upstream
) -> None:
    headers = {"Authorization": f"Bearer {gate.key}"}
    for method, path in (("DELETE", "/openai/files/file-1"), ("POST", "/openai/fine_tuning/jobs")):
        answer = agent.request(method, path, headers=headers, json={})
        assert answer.status_code == 403 and "only model calls pass" in answer.json()["error"]["message"]
    assert upstream.seen == []


def test_upstreams_come_from_the_setting_then_the_workers_variables_then_the_provider() -> None:
    environ = {"OPENAI_BASE_URL": "http://10.0.0.5:8000/v1", "OPENAI_API_KEY": "sk-o", "GOOGLE_API_KEY": "g-key"}
    found = upstreams(Settings(gateway_anthropic_url="http://proxy:4000"), environ, {})
    assert found["openai"] == Route("http://10.0.0.5:8000/v1", "sk-o", "OPENAI_API_KEY")
    assert found["anthropic"] == Route("http://proxy:4000", "", "ANTHROPIC_API_KEY")
    assert found["gemini"] == Route("https://generativelanguage.googleapis.com", "g-key", "GOOGLE_API_KEY")
    own = Route("http://127.0.0.1:8123/v1", "local", "FLEET_LLM_API_KEY")
    assert upstreams(Settings(gateway_openai_url="http://x"), environ, {"openai": own})["openai"] == own


def test_a_server_that_refuses_stream_options_gets_the_request_as_the_client_sent_it(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt, upstream: Upstream
) -> None:
    answer = send(agent, gate, "/openai/chat/completions", CHAT | {"model": "no-stream-options", "stream": True})
    assert answer.status_code == 200 and answer.text.rstrip().endswith("data: [DONE]")
    assert ["stream_options" in seen.body for seen in upstream.seen] == [True, False]
    [call] = calls(attempt)
    assert (call.status, call.output_tokens) == (200, 2) and call.input_tokens > 0  # "Hel" "lo.": 6 characters
    assert call.error == "the answer carried no usage; tokens estimated from the text (4 characters a token)"


def test_a_stream_the_agent_cuts_before_its_usage_is_charged_for_the_text_that_passed(
    agent: httpx.Client, gate: GatewayGate, attempt: Attempt
) -> None:
    body = CHAT | {"model": "slow-usage", "stream": True}
    with agent.stream(
        "POST", "/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {gate.key}"}
    ) as answer:
        first = next(answer.iter_text())
        assert LONG_TEXT[:40] in first  # the whole text came; the agent hangs up before the usage chunk
    deadline = time.monotonic() + 10 * SLOW_USAGE_SECONDS
    while not calls(attempt):
        assert time.monotonic() < deadline, "the cut call was never recorded"
        time.sleep(0.1)
    [call] = calls(attempt)
    assert call.output_tokens == len(LONG_TEXT) // 4 and call.input_tokens > 0
    assert call.error.startswith("the stream was cut") and "tokens estimated from the text" in call.error
    assert call.cost_usd is not None and call.cost_usd > 0 and totals(attempt)[1] == call.output_tokens


def test_closing_a_gate_cuts_its_call_in_flight_records_it_and_refuses_its_key_after(
    gateway: ModelGateway, upstream: Upstream, attempt: Attempt, tmp_path: Path
) -> None:
    body = CHAT | {"model": "slow-usage", "stream": True}
    elsewhere = Database(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(elsewhere)
    other = open_gate(gateway, upstream, new_attempt(elsewhere))
    gate = open_gate(gateway, upstream, attempt)
    with httpx.Client(base_url=gate.url, trust_env=False, timeout=30) as agent:
        with agent.stream(
            "POST", "/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {gate.key}"}
        ) as answer:
            assert LONG_TEXT[:40] in next(answer.iter_text())
            started = time.monotonic()
            gate.close()  # the provider still holds back its usage chunk
            assert time.monotonic() - started < SLOW_USAGE_SECONDS
        [call] = calls(attempt)  # written by the time close() returned
        assert call.error.startswith("the stream was cut") and call.output_tokens == len(LONG_TEXT) // 4
        late = agent.post("/openai/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {gate.key}"})
        assert late.status_code == 401
        alive = agent.post("/openai/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {other.key}"})
        assert alive.status_code == 200 and other.url == gate.url  # one listener; the key tells attempts apart
    other.close()


def test_closing_the_gateway_cuts_the_calls_in_flight_records_them_and_leaves_nothing_running(
    gateway: ModelGateway, upstream: Upstream, attempt: Attempt
) -> None:
    """A worker stopped with an attempt still running (a cold shutdown): where the gateway's close left the call's
    task pending under a closed loop, the agent waited out its read timeout and the call went unrecorded."""
    body = CHAT | {"model": "slow-usage", "stream": True}
    gate = open_gate(gateway, upstream, attempt)
    with (
        httpx.Client(base_url=gate.url, trust_env=False, timeout=30) as agent,
        agent.stream(
            "POST", "/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {gate.key}"}
        ) as answer,
    ):
        text = answer.iter_text()
        assert LONG_TEXT[:40] in next(text)
        started = time.monotonic()
        gateway.close()
        assert [call.error[:19] for call in gate.calls] == ["the stream was cut:"]  # cut before close() returned
        with pytest.raises(httpx.RemoteProtocolError):  # told at once, not after its read timeout
            "".join(text)
        assert time.monotonic() - started < SLOW_USAGE_SECONDS
    threads = threading.active_count()
    gate.close()  # what the attempt's end does next: no error, and no loop started again to cut a call again
    assert threading.active_count() <= threads
    [call] = calls(attempt)
    assert call.error.startswith("the stream was cut")
