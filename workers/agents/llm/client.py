"""A minimal OpenAI-compatible Chat Completions client: one POST per turn, retried with backoff where sensible."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from workers.agents.base import AgentError
from workers.agents.llm.config import LlmConfig

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
BODY_SHOWN = 200


class ModelServerError(AgentError):
    """The model server was down, slow, refused the request or answered something that is not a chat completion."""

    def __init__(self, url: str, reason: str, attempts: int = 1) -> None:
        self.url = url
        self.reason = reason
        self.attempts = attempts
        tries = f" (after {attempts} tries)" if attempts > 1 else ""
        super().__init__(f"model server {url}: {reason}{tries}")


class _Retryable(Exception):
    """A failure worth another try (connection, time-out, 429 or 5xx)."""


@dataclass(frozen=True)
class Reply:
    """The assistant's text and the usage the server reported for this one request."""

    content: str
    tokens_in: int
    tokens_out: int


class ChatClient:
    """Posts the conversation to {base_url}/chat/completions and returns the first choice."""

    def __init__(self, config: LlmConfig, cancelled: threading.Event | None = None) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.cancelled = cancelled or threading.Event()
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = httpx.Client(headers=headers, timeout=config.request_timeout, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def complete(self, messages: list[dict[str, str]], deadline: float | None = None) -> Reply:
        """One chat completion; raises ModelServerError naming the cause once the retries are spent.

        deadline (time.monotonic()) shortens the request time-out so a slow server cannot outlast the attempt.
        """
        payload = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature}
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            timeout = self.config.request_timeout
            if deadline is not None:
                timeout = max(0.1, min(timeout, deadline - time.monotonic()))
            try:
                return self._post(payload, timeout)
            except _Retryable as exc:
                if attempt == attempts or self.cancelled.wait(self.config.backoff_seconds * 2 ** (attempt - 1)):
                    raise ModelServerError(self.url, str(exc), attempt) from None
        raise AssertionError("unreachable")

    def _post(self, payload: dict[str, Any], timeout: float) -> Reply:
        try:
            response = self.http.post(self.url, json=payload, timeout=timeout)
        except httpx.ConnectError as exc:
            raise _Retryable(f"unreachable ({exc})") from None
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:BODY_SHOWN]}")
        if response.status_code != 200:
            raise ModelServerError(self.url, f"HTTP {response.status_code}: {response.text[:BODY_SHOWN]}")
        return _parse(self.url, response)


def _parse(url: str, response: httpx.Response) -> Reply:
    try:
        data = response.json()
    except ValueError:
        raise ModelServerError(url, f"the answer is not JSON: {response.text[:BODY_SHOWN]!r}") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelServerError(url, f"the answer has no choices[0].message.content: {str(data)[:BODY_SHOWN]}") from None
    if not isinstance(content, str):
        raise ModelServerError(url, "choices[0].message.content is not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Reply(content, _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
