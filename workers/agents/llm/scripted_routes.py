"""The scripted model server's routes: which protocol a request speaks, who answers it, what it is billed.

    POST …/chat/completions                       OpenAI chat completions (JSON or SSE)
    POST …/responses                              OpenAI Responses (SSE or JSON)
    POST …/messages, …/messages/count_tokens      Anthropic Messages (SSE or JSON)
    POST …/models/M:generateContent               Gemini (JSON), :streamGenerateContent (SSE with alt=sse,
                                                  else a JSON array), :countTokens
    GET  …/models, HEAD or GET /                  a model list, a health check

With an API key set, a request carrying another key (Bearer, x-api-key, x-goog-api-key or ?key=) gets a 401 in
its protocol's error shape and is billed nothing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from workers.agents.llm import cli_scripts, scripts, wire_anthropic, wire_gemini, wire_openai
from workers.agents.llm.wire import Bill, Conversation, Ledger, Reply, bill_for

GEMINI_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|countTokens)$")
JSON, SSE = "application/json", "text/event-stream"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: a status, a content type, and a body (bytes, or chunks to stream)."""

    status: int
    content_type: str
    body: bytes | Iterator[bytes]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Setup:
    """What the server was started with."""

    default: str  # the llm agent's default script
    delay: float
    api_key: str | None
    ledger: Ledger
    whole_file: str  # the sample's calc.py with add() fixed, for aider's whole-file format


def _json(status: int, body: Any) -> Answer:
    return Answer(status, JSON, json.dumps(body).encode())


def presented_key(path: str, headers: Mapping[str, str]) -> str:
    """The API key a request carries, whichever way its protocol sends it."""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    query = parse_qs(urlsplit(path).query).get("key", [""])[0]
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or query


def _unauthorized(route: str) -> Answer:
    """401 in the route's shape; `x-should-retry: false` stops the OpenAI and Anthropic SDKs retrying it."""
    message = "Incorrect API key provided (scripted server)"
    if route == "anthropic":
        body = wire_anthropic.error(401, "authentication_error", "invalid x-api-key")
    elif route == "gemini":
        body = wire_gemini.error(401, "API key not valid. Please pass a valid API key.")
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
    return Answer(401, JSON, json.dumps(body).encode(), (("x-should-retry", "false"),))


def route_of(method: str, path: str) -> str:
    """The protocol a request speaks, from its method and path ('' for none)."""
    route = urlsplit(path).path.rstrip("/")
    if method in ("GET", "HEAD"):
        return "models" if route.endswith("/models") else "health" if route in ("", "/v1") else ""
    for suffix, name in (("/chat/completions", "chat"), ("/responses", "responses")):
        if route.endswith(suffix):
            return name
    if route.endswith("/messages/count_tokens"):
        return "count_tokens"
    if route.endswith("/messages"):
        return "anthropic"
    return "gemini" if GEMINI_PATH.search(route) else ""


def answer(setup: Setup, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
    """The whole answer to one request."""
    route = route_of(method, path)
    if not route:
        return _json(404, {"error": {"message": f"no route {method} {path}"}})
    if route in ("models", "health"):
        return _json(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in scripts.NAMES]})
    if setup.api_key is not None and presented_key(path, headers) != setup.api_key:
        return _unauthorized(route)
    try:
        request = json.loads(raw or b"{}")
        if not isinstance(request, dict):
            raise ValueError("the body is not a JSON object")
    except ValueError as exc:
        return _json(400, {"error": {"message": f"bad request: {exc}"}})
    if route == "count_tokens":
        return _json(200, {"input_tokens": len(raw) // 4 + 1})
    handler = {"chat": _chat, "responses": _responses, "anthropic": _anthropic, "gemini": _gemini}[route]
    return handler(setup, path, request)


def _bill(setup: Setup, conversation: Conversation, request: Any, reply: Reply) -> Bill:
    bill = bill_for(conversation, request, reply)
    setup.ledger.add(bill)
    return bill


def _chat(setup: Setup, path: str, request: dict[str, Any]) -> Answer:
    conversation = wire_openai.chat_conversation(request)
    if conversation.tools:
        reply = cli_scripts.cli_reply(conversation) or cli_scripts.side_reply(conversation)
    elif cli_scripts.is_aider(conversation):
        reply = cli_scripts.aider_reply(conversation, setup.whole_file)
    elif _is_side_call(conversation):
        reply = cli_scripts.side_reply(conversation)
    else:
        return _llm(setup, request, conversation)
    bill = _bill(setup, conversation, request, reply)
    if conversation.stream:
        return Answer(200, SSE, wire_openai.chat_stream(conversation.model, reply, bill, request))
    return _json(200, wire_openai.chat_body(conversation.model, reply, bill))


def _is_side_call(conversation: Conversation) -> bool:
    """A CLI's title or summary request, not Fleet's own llm agent (which names FLEET_DONE or a script)."""
    ours = scripts.SENTINEL in conversation.text or scripts.MARKER.search(conversation.first_user)
    return not ours and conversation.model not in scripts.NAMES and bool(re.search(r"title|summar", conversation.text))


def _llm(setup: Setup, request: dict[str, Any], conversation: Conversation) -> Answer:
    """Fleet's own llm agent: the scripts it has always had (bash blocks in plain chat)."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    script = scripts.pick_script(conversation.model, messages, setup.default)
    if script == "garbage":
        return Answer(200, "text/html", b"<html><body>502 Bad Gateway, but with status 200</body></html>")
    if script == "error-500":
        return _json(500, {"error": {"message": "scripted internal error"}})
    if script == "slow":
        time.sleep(setup.delay)
    content = scripts.DONE if script == "slow" else scripts.SCRIPTS[script](messages)
    body = scripts.completion(conversation.model, messages, content)
    tokens = body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
    setup.ledger.add(Bill(conversation.protocol, conversation.model, *tokens))
    return _json(200, body)


def _responses(setup: Setup, path: str, request: dict[str, Any]) -> Answer:
    conversation = wire_openai.responses_conversation(request)
    reply = cli_scripts.cli_reply(conversation) or cli_scripts.side_reply(conversation)
    bill = _bill(setup, conversation, request, reply)
    if conversation.stream:
        return Answer(200, SSE, wire_openai.responses_stream(conversation.model, reply, bill))
    return _json(200, wire_openai.responses_body(conversation.model, reply, bill))


def _anthropic(setup: Setup, path: str, request: dict[str, Any]) -> Answer:
    conversation = wire_anthropic.conversation(request)
    reply = cli_scripts.cli_reply(conversation) or cli_scripts.side_reply(conversation)
    bill = _bill(setup, conversation, request, reply)
    if conversation.stream:
        return Answer(200, SSE, wire_anthropic.stream(conversation.model, reply, bill))
    return _json(200, wire_anthropic.body(conversation.model, reply, bill))


def _gemini(setup: Setup, path: str, request: dict[str, Any]) -> Answer:
    found = GEMINI_PATH.search(urlsplit(path).path.rstrip("/"))
    assert found is not None  # route_of matched it
    model, method = found["model"], found["method"]
    if method == "countTokens":
        return _json(200, {"totalTokens": len(json.dumps(request)) // 4 + 1})
    conversation = wire_gemini.conversation(request, model)
    if wire_gemini.wants_json(request) and not conversation.tools:
        reply = wire_gemini.json_reply()
    else:
        reply = cli_scripts.cli_reply(conversation) or cli_scripts.side_reply(conversation)
    bill = _bill(setup, conversation, request, reply)
    if method == "generateContent":
        return _json(200, wire_gemini.body(model, reply, bill))
    if "alt=sse" in urlsplit(path).query:
        return Answer(200, SSE, wire_gemini.stream(model, reply, bill))
    return _json(200, [wire_gemini.body(model, reply, bill)])
