"""The scripted model server's neutral shapes: one request read from any protocol, one reply, one bill.

Each protocol module (wire_openai, wire_anthropic, wire_gemini) reads its request into a Conversation and writes a
Reply back in its own JSON or SSE shape, with the usage the server billed for it. Token counts are deterministic
(about four characters a token), so a test can compare what Fleet recorded with what the server billed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRICE_IN_PER_MTOK = 3.0  # what the scripted server bills, in USD per million tokens
PRICE_OUT_PER_MTOK = 15.0


@dataclass(frozen=True)
class Conversation:
    """What a request asks, whatever its protocol: the text seen so far, the tools offered, the turns taken."""

    protocol: str
    model: str
    text: str  # every message's text, system prompt first, in order (for markers and the working directory)
    first_user: str
    tools: frozenset[str]
    turns: int  # assistant turns already in the conversation
    tool_results: tuple[str, ...] = ()
    stream: bool = False


@dataclass(frozen=True)
class ToolCall:
    """One tool call the script makes."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")


@dataclass(frozen=True)
class Reply:
    """What the model says: text, tool calls, or both."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Bill:
    """One request's billed usage."""

    protocol: str
    model: str
    tokens_in: int
    tokens_out: int

    @property
    def cost_usd(self) -> float:
        return (self.tokens_in * PRICE_IN_PER_MTOK + self.tokens_out * PRICE_OUT_PER_MTOK) / 1e6


def count_tokens(value: Any) -> int:
    """About four characters a token, at least one."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return len(text) // 4 + 1


def bill_for(conversation: Conversation, request: Any, reply: Reply) -> Bill:
    """The usage billed for one answer: the whole request in, the reply's text and calls out."""
    out = reply.text + "".join(call.name + json.dumps(call.arguments, sort_keys=True) for call in reply.calls)
    return Bill(conversation.protocol, conversation.model, count_tokens(request), count_tokens(out))


class Ledger:
    """Every bill, in order; appended to a JSON-lines file too when the server was given one."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.bills: list[Bill] = []

    def add(self, bill: Bill) -> None:
        with self.lock:
            self.bills.append(bill)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps({**bill.__dict__, "cost_usd": bill.cost_usd}) + "\n")

    def totals(self) -> tuple[int, int, float]:
        """(tokens in, tokens out, cost) over every bill so far."""
        with self.lock:
            bills = list(self.bills)
        return sum(b.tokens_in for b in bills), sum(b.tokens_out for b in bills), sum(b.cost_usd for b in bills)


def sse(events: Iterator[tuple[str | None, dict[str, Any]]]) -> Iterator[bytes]:
    """Server-sent events: `event: NAME` (when named) and one `data:` line of JSON each."""
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        yield f"{head}data: {json.dumps(data)}\n\n".encode()


def text_of(content: Any) -> str:
    """The text in a message's content, whichever way the protocol nests it (string, parts, blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "content", "output", "input_text"):
            if key in content:
                return text_of(content[key])
        if "functionResponse" in content:
            return json.dumps(content["functionResponse"].get("response", {}))
    return ""
