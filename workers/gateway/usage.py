"""Where each provider reports what it billed, read from its own usage fields, in JSON answers and in streams.

- OpenAI Chat Completions: `usage` (`prompt_tokens` includes `prompt_tokens_details.cached_tokens`); streamed, one
  last chunk with `choices: []` carries it, sent only with `stream_options.include_usage`.
- OpenAI Responses: `usage` (`input_tokens` includes `input_tokens_details.cached_tokens`); streamed, in the
  terminal `response.completed` / `response.incomplete` / `response.failed` event's `response.usage`.
- Anthropic Messages: `usage` (`input_tokens` excludes `cache_read_input_tokens` and
  `cache_creation_input_tokens`); streamed, `message_start.message.usage` then `message_delta.usage`, cumulative:
  each field is replaced, never added.
- Gemini generateContent: `usageMetadata` (`promptTokenCount` includes `cachedContentTokenCount`; thoughts are
  billed as output but not counted in `candidatesTokenCount`); streamed, every chunk may carry it and the last wins.

Usage is normalised so that input_tokens counts every input token, cached_tokens the cache reads among them and
cache_write_tokens the cache writes among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Wire(str, Enum):
    """The metered protocols; the value is what model_calls.protocol stores."""

    CHAT = "openai-chat"
    RESPONSES = "openai-responses"
    MESSAGES = "anthropic-messages"
    GEMINI = "gemini"


@dataclass(frozen=True)
class Usage:
    """Billed tokens of one call, normalised across providers."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0


CHARS_PER_TOKEN = 4  # what a call is charged by when its answer never said its usage (a cut stream)
TEXT_KEYS = frozenset({"content", "text", "arguments", "partial_json", "thinking"})


def text_chars(data: Any, inside: bool = False) -> int:
    """Characters of generated text in an answer or a chunk: the strings under the keys that carry text."""
    if isinstance(data, str):
        return len(data) if inside else 0
    if isinstance(data, list):
        return sum(text_chars(item, inside) for item in data)
    if isinstance(data, dict):
        return sum(text_chars(value, inside or key in TEXT_KEYS) for key, value in data.items())
    return 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def openai_chat(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    cached = _int(_get(usage, "prompt_tokens_details", "cached_tokens"))
    return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), cached)


def openai_responses(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    cached = _int(_get(usage, "input_tokens_details", "cached_tokens"))
    return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), cached)


def anthropic(usage: Any, before: Usage | None = None) -> Usage | None:
    """Anthropic's usage laid over what an earlier event of the same stream said (its fields are cumulative)."""
    if not isinstance(usage, dict):
        return before
    base = before or Usage()
    plain = _int(usage["input_tokens"]) if "input_tokens" in usage else None
    read = _int(usage["cache_read_input_tokens"]) if "cache_read_input_tokens" in usage else base.cached_tokens
    write = (
        _int(usage["cache_creation_input_tokens"])
        if "cache_creation_input_tokens" in usage
        else base.cache_write_tokens
    )
    if plain is None:
        plain = base.input_tokens - base.cached_tokens - base.cache_write_tokens
    output = _int(usage["output_tokens"]) if "output_tokens" in usage else base.output_tokens
    return Usage(plain + read + write, output, read, write)


def gemini(metadata: Any) -> Usage | None:
    if not isinstance(metadata, dict):
        return None
    prompt = _int(metadata.get("promptTokenCount")) + _int(metadata.get("toolUsePromptTokenCount"))
    output = _int(metadata.get("candidatesTokenCount")) + _int(metadata.get("thoughtsTokenCount"))
    return Usage(prompt, output, _int(metadata.get("cachedContentTokenCount")))


@dataclass
class Tally:
    """What one call's answer says so far: its usage, the model that answered, and an error it reported."""

    wire: Wire
    usage: Usage | None = None
    model: str = ""
    error: str | None = None
    said: int = 0  # characters of generated text seen, for an estimate when no usage comes

    def estimate(self, request_chars: int) -> Usage:
        """The usage to charge when the answer never said it: its text and the request, 4 characters a token."""
        return Usage(-(-request_chars // CHARS_PER_TOKEN), -(-self.said // CHARS_PER_TOKEN))

    def body(self, data: Any) -> None:
        """A whole JSON answer (for Gemini's unlabelled stream, a JSON array of chunks)."""
        if isinstance(data, list):
            for chunk in data:
                self.body(chunk)
            return
        if not isinstance(data, dict):
            return
        self.said += text_chars(
            data.get("choices") or data.get("candidates") or data.get("content") or data.get("output")
        )
        if isinstance(data.get("error"), dict):
            self.error = str(data["error"].get("message") or data["error"])
        if self.wire is Wire.GEMINI:
            self.usage = gemini(data.get("usageMetadata")) or self.usage
            self.model = str(data.get("modelVersion") or self.model)
            return
        read = {Wire.CHAT: openai_chat, Wire.RESPONSES: openai_responses}.get(self.wire, anthropic)
        self.usage = read(data.get("usage")) or self.usage
        self.model = str(data.get("model") or self.model)

    def event(self, name: str, data: Any) -> None:
        """One server-sent event's data (parsed JSON) from a stream."""
        if not isinstance(data, dict):
            return
        kind = str(data.get("type") or name)
        if self.wire is Wire.RESPONSES:
            self._responses_event(kind, data)
        elif self.wire is Wire.MESSAGES:
            self._anthropic_event(kind, data)
        else:  # chat chunks and Gemini chunks are whole answers in small
            self.body(data)

    def _responses_event(self, kind: str, data: dict[str, Any]) -> None:
        response = data.get("response")
        if kind.endswith(".delta") and isinstance(data.get("delta"), str):
            self.said += len(data["delta"])
        if kind in ("response.completed", "response.incomplete", "response.failed") and isinstance(response, dict):
            self.usage = openai_responses(response.get("usage")) or self.usage
            self.model = str(response.get("model") or self.model)
            if kind == "response.failed":
                self.error = str(_get(response, "error", "message") or "response.failed")
        elif kind == "error":
            self.error = str(data.get("message") or _get(data, "error", "message") or "error")

    def _anthropic_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            self.said += text_chars(data.get("delta"))
        if kind == "message_start" and isinstance(data.get("message"), dict):
            self.usage = anthropic(data["message"].get("usage"), self.usage)
            self.model = str(data["message"].get("model") or self.model)
        elif kind == "message_delta":
            self.usage = anthropic(data.get("usage"), self.usage)
        elif kind == "error":
            self.error = str(_get(data, "error", "message") or "error")
