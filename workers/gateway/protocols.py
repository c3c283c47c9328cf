"""The three API families the gateway serves: which requests are metered, where keys go, how errors look.

A gate serves `/openai/...`, `/anthropic/...` and `/gemini/...`; what follows the family is appended to that
family's upstream base URL (`/openai/chat/completions` goes to `https://api.openai.com/v1/chat/completions`).
The agent authenticates with its attempt's placeholder key, in whatever header its SDK uses (Authorization: Bearer,
x-api-key, x-goog-api-key or `?key=`); every one of them is removed and the real key is set in its family's own
header on the way upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.gateway.usage import Wire

FAMILIES = ("openai", "anthropic", "gemini")
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "host", "content-length", "accept-encoding", "content-encoding", *KEY_HEADERS}
)
GEMINI_STATUS = {
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    404: "NOT_FOUND",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Upstream:
    """Where one family's requests go, and the real key (from key_name in the worker's environment) sent there."""

    base_url: str
    key: str = ""
    key_name: str = ""


def wire_of(family: str, path: str) -> Wire | None:
    """The metered protocol of a request, or None for one passed through unmetered (a model list, count_tokens)."""
    path = path.rstrip("/")
    tail = path.rpartition("/")[2]
    if family == "openai":
        if path.endswith("responses/compact"):  # Codex's compaction: a model call like any other
            return Wire.RESPONSES
        return {"completions": Wire.CHAT, "responses": Wire.RESPONSES}.get(tail)
    if family == "anthropic":
        return Wire.MESSAGES if tail == "messages" else None
    if family == "gemini" and (":generateContent" in tail or ":streamGenerateContent" in tail):
        return Wire.GEMINI
    return None


def passes(method: str, family: str, path: str) -> bool:
    """Whether the gateway sends a request on: model calls (POST), token counts, and reading (GET, such as the list
    of models). Nothing else goes out with the real key: an agent cannot delete the account's files or start a
    fine-tuning job."""
    if method == "GET":
        return True
    tail = path.rstrip("/").rpartition("/")[2]
    return method == "POST" and (
        wire_of(family, path) is not None or tail in ("count_tokens",) or ":countTokens" in tail
    )


def presented_keys(headers: Mapping[str, str], query: Mapping[str, str]) -> set[str]:
    """Every credential the request carries, wherever its SDK put it."""
    found = {headers.get(name, "").strip() for name in KEY_HEADERS} | {query.get("key", "").strip()}
    found |= {value.removeprefix("Bearer ").removeprefix("bearer ").strip() for value in found}
    return {value for value in found if value}


def upstream_headers(family: str, headers: Mapping[str, str], key: str) -> dict[str, str]:
    """The request's headers less hop-by-hop ones and every credential, with the real key in the family's header."""
    sent = {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}
    sent["accept-encoding"] = "identity"  # the gateway reads the answer: no compressed bodies
    if key:
        name, value = {"openai": ("authorization", f"Bearer {key}"), "anthropic": ("x-api-key", key)}.get(
            family, ("x-goog-api-key", key)
        )
        sent[name] = value
    return sent


def answer_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream answer's headers that still hold after the gateway (no length, encoding or hop-by-hop)."""
    return {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}


def error_body(family: str, status: int, kind: str, message: str) -> dict[str, Any]:
    """An error in the family's own shape, so the agent's SDK shows the message instead of failing to parse."""
    if family == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    if family == "gemini":
        return {
            "error": {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "FAILED_PRECONDITION")}
        }
    return {"error": {"message": message, "type": kind, "code": kind}}
