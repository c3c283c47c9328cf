"""Gemini generateContent and streamGenerateContent for the scripted model server (gemini-cli).

`:streamGenerateContent?alt=sse` answers server-sent events; without `alt=sse` it answers one JSON array of the
same chunks. Usage is in `usageMetadata`. A request that asks for JSON output (gemini-cli's side calls: the next
speaker, loop detection) gets a JSON answer that lets the CLI end its turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from workers.agents.llm.wire import Bill, Conversation, Reply, sse, text_of

SIDE_JSON = {"reasoning": "The task is done.", "next_speaker": "user"}


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or [] if isinstance(p, dict)]


def conversation(request: dict[str, Any], model: str) -> Conversation:
    """A generateContent request read; model comes from the URL."""
    contents = [c for c in request.get("contents") or [] if isinstance(c, dict)]
    declared = [d for t in request.get("tools") or [] for d in (t.get("functionDeclarations") or [])]
    results = [json.dumps(p["functionResponse"]) for c in contents for p in _parts(c) if "functionResponse" in p]
    system = " ".join(text_of(p) for p in _parts(request.get("systemInstruction")))
    return Conversation(
        protocol="gemini",
        model=model,
        text="\n".join([system, *(text_of(p) for c in contents for p in _parts(c))]),
        first_user=next((text_of(p) for c in contents if c.get("role") == "user" for p in _parts(c)), ""),
        tools=frozenset(str(d.get("name", "")) for d in declared if isinstance(d, dict)) - {""},
        turns=sum(1 for c in contents if c.get("role") == "model"),
        tool_results=tuple(results),
    )


def wants_json(request: dict[str, Any]) -> bool:
    """The request asks for a JSON answer (responseMimeType application/json, or a schema)."""
    config = request.get("generationConfig") or {}
    return config.get("responseMimeType") == "application/json" or "responseJsonSchema" in config


def json_reply() -> Reply:
    return Reply(json.dumps(SIDE_JSON))


def body(model: str, reply: Reply, bill: Bill) -> dict[str, Any]:
    """A GenerateContentResponse with its usageMetadata."""
    parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    parts += [{"functionCall": {"name": c.name, "args": c.arguments, "id": c.id}} for c in reply.calls]
    usage = {
        "promptTokenCount": bill.tokens_in,
        "candidatesTokenCount": bill.tokens_out,
        "totalTokenCount": bill.tokens_in + bill.tokens_out,
    }
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "scripted"}


def stream(model: str, reply: Reply, bill: Bill) -> Iterator[bytes]:
    """One SSE chunk holding the whole answer and its usage."""
    return sse(iter([(None, body(model, reply, bill))]))


def error(status: int, message: str) -> dict[str, Any]:
    """Google's error body."""
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 500: "INTERNAL"}
    return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}
