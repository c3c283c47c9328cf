"""What the gateway reads from a metered request's JSON body: the model, whether it streams, its output limit, the
body to send (a Chat Completions stream is asked for its usage) and the body as stored (keys redacted, cut).

Pure functions of the body's bytes, so that a large body can be read in another process (reader.py) with the same
answer as on the gateway's loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workers.gateway.usage import Tally, Wire

KEPT_BYTES = 64_000  # of each request and answer, in the transcript
OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_OUTPUT_TOKENS = 1_000_000  # above any model's; a larger limit is read as this (no float overflow when priced)


@dataclass(frozen=True)
class Asked:
    """What a metered request asks for, as the gateway reads its body."""

    model: str
    streamed: bool
    output_tokens: int | None  # the most output tokens it allows, where it says
    sent: bytes | None  # the body to send instead of the client's, when a chat stream is asked for its usage
    record: str  # the body to send, as stored: every key redacted, cut to KEPT_BYTES


def parsed_json(data: bytes | str) -> Any:
    """The JSON value, or None for what is not JSON (or nests too deep to read)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def redacted(text: str, secrets: Iterable[str]) -> str:
    """text without any of the secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def bounded(text: str) -> str:
    """text, or its two ends when it is over KEPT_BYTES."""
    if len(text) <= KEPT_BYTES:
        return text
    half = KEPT_BYTES // 2
    return f"{text[:half]}\n[... {len(text) - KEPT_BYTES} characters left out ...]\n{text[-half:]}"


def read_request(family: str, rest: str, wire: Wire, body: bytes, secrets: tuple[str, ...]) -> Asked:
    """What the request at /family/rest asks for."""
    parsed = parsed_json(body) if body else None
    streamed = ":streamGenerateContent" in rest or (isinstance(parsed, dict) and bool(parsed.get("stream")))
    sent = json.dumps(parsed).encode() if _asks_usage(wire, parsed) else None
    record = bounded(redacted(body.decode("utf-8", "replace") if sent is None else sent.decode(), secrets))
    return Asked(_model_in(family, rest, parsed), streamed, _output_asked(parsed), sent, record)


def read_answer(wire: Wire, content: bytes, secrets: tuple[str, ...]) -> tuple[Tally, str]:
    """What a whole JSON answer says (its usage, model, error and text), and the answer as stored (keys redacted,
    cut to KEPT_BYTES)."""
    tally = Tally(wire)
    tally.body(parsed_json(content))
    return tally, bounded(redacted(content.decode("utf-8", "replace"), secrets))


def _model_in(family: str, rest: str, body: Any) -> str:
    if family == "gemini":
        return rest.rpartition("models/")[2].partition(":")[0]
    return str(body.get("model") or "") if isinstance(body, dict) else ""


def _asks_usage(wire: Wire, body: Any) -> bool:
    """Ask a Chat Completions stream for its usage chunk when the client did not, or asked not to get it (it is
    then kept from the client): a call is charged what the provider says it used, never an estimate the client
    chose."""
    if wire is not Wire.CHAT or not isinstance(body, dict) or not body.get("stream"):
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def _output_asked(body: Any) -> int | None:
    """The most output tokens the request allows, where it says (each family's own field; the largest, when it
    names several: the provider may read any of them)."""
    if not isinstance(body, dict):
        return None
    fields = [body.get(name) for name in OUTPUT_FIELDS]
    for config in ("generationConfig", "generation_config"):  # Gemini's JSON takes either spelling of each
        if isinstance(body.get(config), dict):
            fields += [body[config].get(name) for name in ("maxOutputTokens", "max_output_tokens")]
    limits = [limit for value in fields if (limit := _count(value)) is not None and limit > 0]
    return min(max(limits), MAX_OUTPUT_TOKENS) if limits else None


def _count(value: Any) -> int | None:
    """A number of tokens as the providers' JSON parsers read one: an integer, a whole float or a string of
    digits (protobuf's JSON takes `"65536"`); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(min(value, MAX_OUTPUT_TOKENS))
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        return int(value.strip()[:12])  # past a million either way: MAX_OUTPUT_TOKENS
    return None
