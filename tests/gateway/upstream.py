"""A model provider for the gateway's tests: canned, real-shaped answers (JSON and SSE) for the four protocols.

Each answer bills the usage in BILLED for its protocol; a request whose key is not GOOD_KEY gets the provider's own
401. Every request's path, headers and body are kept in `seen`, so a test can see what reached the provider.
Shapes follow the providers' API references (openai-python's ChatCompletionChunk and Response stream events,
anthropic's MessageStreamEvent, the Gemini API's GenerateContentResponse).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOD_KEY = "sk-real-upstream-key-0123456789"
LONG_TEXT = "The whole answer, sent before its usage. " * 100  # 4,100 characters
SLOW_USAGE_SECONDS = 3.0
LARGE_ANSWER_BYTES = 30 * 2**20
# What each protocol's answer bills: (input incl. cached, output, cached).
BILLED = {
    "openai-chat": (1200, 50, 200),
    "openai-responses": (3000, 120, 1000),
    "anthropic-messages": (2600, 80, 2000),
    "gemini": (900, 90, 300),
}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)


def _chat(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    usage = {"prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250}
    usage |= {"prompt_tokens_details": {"cached_tokens": 200}, "completion_tokens_details": {"reasoning_tokens": 0}}
    base = {"id": "chatcmpl-1", "created": 1764590000, "model": "gpt-4o-2024-08-06"}
    message = {"role": "assistant", "content": "Hello."}
    whole = base | {"object": "chat.completion", "usage": usage}
    whole["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
    chunk = base | {"object": "chat.completion.chunk", "usage": None}
    events: list[tuple[str, Any]] = [
        ("", chunk | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        ("", chunk | {"choices": [{"index": 0, "delta": {"content": "lo."}, "finish_reason": "stop"}]}),
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(("", chunk | {"choices": [], "usage": usage}))
    events.append(("", "[DONE]"))
    return whole, events


def _responses(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    usage = {"input_tokens": 3000, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 120}
    usage |= {"output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 3120}
    response = {"id": "resp_1", "object": "response", "model": "gpt-5-codex", "status": "completed", "usage": usage}
    response["output"] = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}]
    events: list[tuple[str, Any]] = [
        (
            "response.created",
            {"type": "response.created", "response": response | {"status": "in_progress", "usage": None}},
        ),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi", "output_index": 0}),
        ("response.completed", {"type": "response.completed", "response": response}),
    ]
    return response, events


def _messages(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    usage = {"input_tokens": 100, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 2000}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929"}
    whole = message | {"content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn"}
    whole["usage"] = usage | {"output_tokens": 80}
    start = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    events: list[tuple[str, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 40}},
        ),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 80}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return whole, events


def _gemini(body: dict[str, Any]) -> tuple[Any, list[tuple[str, Any]]]:
    final = {"promptTokenCount": 900, "candidatesTokenCount": 60, "thoughtsTokenCount": 30}
    final |= {"cachedContentTokenCount": 300, "totalTokenCount": 990}
    content = {"role": "model", "parts": [{"text": "Hi"}]}
    chunk = {"candidates": [{"content": content, "index": 0}], "modelVersion": "gemini-2.5-flash"}
    early = chunk | {"usageMetadata": {"promptTokenCount": 900, "totalTokenCount": 900}}
    last = chunk | {"usageMetadata": final}
    last["candidates"] = [{"content": content, "finishReason": "STOP", "index": 0}]
    return last, [("", early), ("", last)]


ANSWERS = {"chat/completions": _chat, "responses": _responses, "messages": _messages}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size) or b"{}")
        self.server.upstream.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        keys = {self.headers.get("x-api-key"), self.headers.get("x-goog-api-key"), self.headers.get("Authorization")}
        if not keys & {GOOD_KEY, f"Bearer {GOOD_KEY}"}:
            return self._json(
                401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            )
        path = self.path.partition("?")[0]
        if body.get("model") == "no-stream-options" and "stream_options" in body:  # some compatible servers
            return self._json(400, {"error": {"message": "Unrecognized request argument supplied: stream_options"}})
        if ":" in path.rpartition("/")[2]:
            whole, events = _gemini(body)
            streamed = ":streamGenerateContent" in path
            if streamed and "alt=sse" not in self.path:
                return self._json(200, [data for _, data in events])
        else:
            answer = next(make for tail, make in ANSWERS.items() if path.endswith(tail))
            whole, events = answer(body)
            if body.get("model") == "large-answer":  # whole, 30 MiB of text, led by the file its reading waits for
                whole = {"hold_until": body.get("answer_hold", "")} | whole
                whole["choices"][0]["message"]["content"] = "x" * LARGE_ANSWER_BYTES
            if body.get("model") == "heavy-answer":  # 32 MiB of `{}, `: about 650 MB to read as JSON
                whole["logprobs"] = [{}] * (8 * 2**20)
            streamed = bool(body.get("stream"))
        if not streamed:
            return self._json(200, whole)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        slow = str(body.get("model")).startswith("slow-usage")  # `slow-usage/gpt-5`: priced as gpt-5
        if slow:  # the text at once, then a long wait before the usage chunk
            events = [("", events[0][1] | {"choices": [{"index": 0, "delta": {"content": LONG_TEXT}}]}), *events[2:]]
        try:
            for n, (name, data) in enumerate(events):
                if n == 1 and slow:
                    time.sleep(SLOW_USAGE_SECONDS)
                text = data if isinstance(data, str) else json.dumps(data)
                self.wfile.write((f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up
        self.close_connection = True

    def _json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of calls at once: the default backlog of 5 refused some (a 502)
    upstream: Upstream


@contextmanager
def model_upstream() -> Iterator[Upstream]:
    """The provider on a free loopback port, until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.upstream = Upstream(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.upstream
    finally:
        server.shutdown()
        server.server_close()
