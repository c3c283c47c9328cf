"""OpenAI's two protocols for the scripted model server: chat completions (JSON and SSE) and Responses (SSE, JSON).

Chat completions is what aider and mini-swe-agent (through litellm), opencode (@ai-sdk/openai-compatible) and
Fleet's own llm agent send; the usage chunk is streamed only when the request asks for it
(`stream_options.include_usage`), as OpenAI does. Responses is what codex sends; its usage is in
`response.completed`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from workers.agents.llm.wire import Bill, Conversation, Reply, sse, text_of


def chat_conversation(request: dict[str, Any]) -> Conversation:
    """A chat.completions request read."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    tools = frozenset(str((t.get("function") or {}).get("name", "")) for t in request.get("tools") or [])
    return Conversation(
        protocol="openai-chat",
        model=str(request.get("model", "")),
        text="\n".join(text_of(m.get("content")) for m in messages),
        first_user=next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), ""),
        tools=tools - {""},
        turns=sum(1 for m in messages if m.get("role") == "assistant"),
        tool_results=tuple(text_of(m.get("content")) for m in messages if m.get("role") == "tool"),
        stream=bool(request.get("stream")),
    )


def _chat_usage(bill: Bill) -> dict[str, int]:
    total = bill.tokens_in + bill.tokens_out
    return {"prompt_tokens": bill.tokens_in, "completion_tokens": bill.tokens_out, "total_tokens": total}


def _chat_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in reply.calls
    ]


def chat_body(model: str, reply: Reply, bill: Bill) -> dict[str, Any]:
    """A chat.completion JSON body."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.calls:
        message["tool_calls"] = _chat_calls(reply)
    return {
        "id": f"chatcmpl-scripted-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.calls else "stop"}],
        "usage": _chat_usage(bill),
    }


def chat_stream(model: str, reply: Reply, bill: Bill, request: dict[str, Any]) -> Iterator[bytes]:
    """chat.completion.chunk events, then the usage chunk when asked for, then [DONE]."""
    head: dict[str, Any] = {"id": f"chatcmpl-scripted-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk"}
    head |= {"created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def events() -> Iterator[tuple[str | None, dict[str, Any]]]:
        yield chunk({"role": "assistant", "content": ""})
        if reply.text:
            yield chunk({"content": reply.text})
        for index, call in enumerate(_chat_calls(reply)):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        yield chunk({}, "tool_calls" if reply.calls else "stop")
        if (request.get("stream_options") or {}).get("include_usage"):
            yield None, {**head, "choices": [], "usage": _chat_usage(bill)}

    yield from sse(events())
    yield b"data: [DONE]\n\n"


def responses_conversation(request: dict[str, Any]) -> Conversation:
    """A Responses API request read (codex)."""
    items = request.get("input") or []
    items = [{"type": "message", "role": "user", "content": items}] if isinstance(items, str) else items
    items = [i for i in items if isinstance(i, dict)]
    texts = [str(request.get("instructions") or "")] + [text_of(i.get("content") or i.get("output")) for i in items]
    users = [text_of(i.get("content")) for i in items if i.get("role") == "user"]
    said = [i for i in items if i.get("type") == "function_call" or i.get("role") == "assistant"]
    return Conversation(
        protocol="openai-responses",
        model=str(request.get("model", "")),
        text="\n".join(texts),
        first_user=users[0] if users else "",
        tools=frozenset(str(t.get("name") or t.get("type") or "") for t in request.get("tools") or []) - {""},
        turns=len(said),
        tool_results=tuple(text_of(i.get("output")) for i in items if i.get("type") == "function_call_output"),
        stream=bool(request.get("stream")),
    )


def _response_items(reply: Reply) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.text:
        content = [{"type": "output_text", "text": reply.text, "annotations": []}]
        items.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:12]}", "role": "assistant"} | {
            "status": "completed", "content": content})  # fmt: skip
    for call in reply.calls:
        items.append({"type": "function_call", "id": f"fc_{call.id}", "call_id": call.id, "name": call.name} | {
            "arguments": json.dumps(call.arguments), "status": "completed"})  # fmt: skip
    return items


def responses_body(model: str, reply: Reply, bill: Bill) -> dict[str, Any]:
    """A Response object, completed, with its usage."""
    usage = {
        "input_tokens": bill.tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": bill.tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": bill.tokens_in + bill.tokens_out,
    }
    return {"id": f"resp_{uuid.uuid4().hex[:12]}", "object": "response", "created_at": int(time.time())} | {
        "status": "completed", "model": model, "output": _response_items(reply), "usage": usage}  # fmt: skip


def responses_stream(model: str, reply: Reply, bill: Bill) -> Iterator[bytes]:
    """response.created, each output item added and done (text as one delta), then response.completed."""
    final = responses_body(model, reply, bill)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    sequence = iter(range(1_000_000))

    def event(name: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return name, {"type": name, "sequence_number": next(sequence), **fields}

    def events() -> Iterator[tuple[str | None, dict[str, Any]]]:
        yield event("response.created", response=started)
        for index, item in enumerate(final["output"]):
            yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
            if item["type"] == "message":
                delta = dict(item_id=item["id"], output_index=index, content_index=0, delta=reply.text)
                yield event("response.output_text.delta", **delta)
            yield event("response.output_item.done", output_index=index, item=item)
        yield event("response.completed", response=final)

    return sse(events())
