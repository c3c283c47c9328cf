"""Anthropic Messages for the scripted model server (claude-code): JSON and SSE, text and tool_use blocks.

Streamed usage is as Anthropic sends it: input tokens in `message_start`, the cumulative output tokens in the
last `message_delta`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from workers.agents.llm.wire import Bill, Conversation, Reply, sse, text_of


def conversation(request: dict[str, Any]) -> Conversation:
    """A /v1/messages request read."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    results = [
        text_of(block.get("content"))
        for m in messages
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return Conversation(
        protocol="anthropic",
        model=str(request.get("model", "")),
        text="\n".join([text_of(request.get("system") or ""), *(text_of(m.get("content")) for m in messages)]),
        first_user=next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), ""),
        tools=frozenset(str(t.get("name", "")) for t in request.get("tools") or [] if isinstance(t, dict)) - {""},
        turns=sum(1 for m in messages if m.get("role") == "assistant"),
        tool_results=tuple(results),
        stream=bool(request.get("stream")),
    )


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    blocks += [{"type": "tool_use", "id": f"toolu_{c.id}", "name": c.name, "input": c.arguments} for c in reply.calls]
    return blocks


def _usage(bill: Bill, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": bill.tokens_in,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def body(model: str, reply: Reply, bill: Bill) -> dict[str, Any]:
    """A Message."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks(reply),
        "stop_reason": "tool_use" if reply.calls else "end_turn",
        "stop_sequence": None,
        "usage": _usage(bill, bill.tokens_out),
    }


def stream(model: str, reply: Reply, bill: Bill) -> Iterator[bytes]:
    """message_start, one content block per text or tool_use (each with one delta), message_delta, message_stop."""
    message = body(model, reply, bill)
    start = {**message, "content": [], "stop_reason": None, "usage": _usage(bill, 1)}

    def events() -> Iterator[tuple[str | None, dict[str, Any]]]:
        yield "message_start", {"type": "message_start", "message": start}
        for index, block in enumerate(message["content"]):
            opened: dict[str, Any]
            if block["type"] == "text":
                opened, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
            else:
                opened = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": opened}
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        done = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield "message_delta", {"type": "message_delta", "delta": done, "usage": {"output_tokens": bill.tokens_out}}
        yield "message_stop", {"type": "message_stop"}

    return sse(events())


def error(status: int, kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}
