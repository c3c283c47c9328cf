"""One gate's HTTP handling: check the agent's key, refuse past the budget, forward with the real key, meter.

Starlette serves the agent's side and httpx the provider's: both are already Fleet's dependencies (the web app,
the llm agent), both stream, and the gateway then parses no HTTP itself, only the providers' bodies and events.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from workers.gateway.intake import MAX_REQUEST_BYTES, Cut, Full, Intake, TooLarge, TooSlow, received
from workers.gateway.protocols import (
    FAMILIES,
    Upstream,
    answer_headers,
    error_body,
    passes,
    presented_keys,
    upstream_headers,
    wire_of,
)
from workers.gateway.reader import LARGE_BYTES, Busy, Reader, ReadFailed, TooHeavy
from workers.gateway.reading import KEPT_BYTES, Asked, bounded, parsed_json, redacted
from workers.gateway.sse import Event, EventSplitter
from workers.gateway.usage import CHARS_PER_TOKEN, Tally, Usage, Wire

MAX_CALLS_AT_ONCE = 16  # calls of one gate in flight, counted from before their bodies are read; more: 429, retry
NO_RETRY = {"x-should-retry": "false"}  # the Stainless SDKs (openai, anthropic) honour it
# A model API's path: the characters of its routes and model names, in segments that are neither `.` nor `..`. A `?`,
# `#`, `%` or `\` the agent encoded into the path would be read again by the URL built from it, as a query, a
# fragment or an escape: the request judged as one path would go out as another.
PLAIN_PATH = re.compile(r"[A-Za-z0-9._~:@+-]+(/[A-Za-z0-9._~:@+-]+)*/?")


@dataclass(eq=False)
class Hold:
    """What a call counts against its ticket's budget while in flight: the call's from the moment the meter writes it
    on the gate's writer thread (written), whether or not its handler, cut meanwhile, sees it; its record lets it go."""

    usd: float = 0.0
    written: bool = False  # set and read on the gate's writer thread only


@dataclass(frozen=True)
class Call:
    """One metered request as the gateway saw it."""

    wire: Wire
    model: str
    streamed: bool
    status: int
    usage: Usage | None
    duration: float
    error: str | None
    request: str
    response: str
    hold: Hold = field(default_factory=Hold)

    @property
    def held(self) -> float:
        """USD the call held against the budget while in flight, let go as it is recorded."""
        return self.hold.usd if self.hold.written else 0.0


class Meter(Protocol):
    """Where a gate's calls go (the database), and what may stop them (the ticket's budget)."""

    def hold(self, model: str, request_bytes: int, output_tokens: int) -> float:
        """What a call about to go out counts against the budget until it ends: its input, and its output limit
        (`output_tokens`; 0 when the request names none)."""
        ...

    def admit(self, model: str, usd: float) -> str | None:
        """Why no further model call at model may go out for this attempt (its ticket's spend, with what every call
        in flight of the ticket's attempts holds, reaches its budget); or None, and the call holds usd until it is
        recorded."""
        ...

    def record(self, call: Call) -> None:
        """Write the call, and let go of what it held (call.held)."""
        ...

    def open(self) -> None:
        """The gate opens: what a dead earlier gate of the attempt holds counts no more (a live one keeps its holds)."""
        ...

    def release(self) -> None:
        """The gate has closed: let go of what its own calls hold and no record let go of, and only that (a newer gate
        of the attempt, on another worker, keeps what its calls hold)."""
        ...


@dataclass
class _Place:
    """A call's place among its gate's MAX_CALLS_AT_ONCE: taken before its body is read, freed once, when it ends."""

    hold: Hold = field(default_factory=Hold)
    freed: bool = False


@dataclass
class _Exchange:
    """One request on its way through: what to record once its answer has ended."""

    family: str
    wire: Wire
    model: str
    streamed: bool
    request: str
    started: float
    tally: Tally
    place: _Place = field(default_factory=_Place)
    strip_usage: bool = False
    kept: int = 0  # characters of a stream kept for the record so far
    request_chars: int = 0


def _charged(tally: Tally, request_chars: int, error: str | None) -> tuple[Usage, str | None]:
    """What a call is charged when its answer never said its usage, or its stream was cut before the final figure
    (an agent must not get text for free by hanging up early): the text that passed, estimated."""
    guess, said = tally.estimate(request_chars), tally.usage
    if said is not None and said.output_tokens >= guess.output_tokens:
        return said, error
    usage = (
        Usage(guess.input_tokens, guess.output_tokens)
        if said is None
        else replace(said, output_tokens=guess.output_tokens)
    )
    reason = error or ("the answer carried no usage" if said is None else "the answer's usage was incomplete")
    return usage, f"{reason}; tokens estimated from the text ({CHARS_PER_TOKEN} characters a token)"


def _usage_chunk(data: Any) -> bool:
    return isinstance(data, dict) and data.get("choices") == [] and isinstance(data.get("usage"), dict)


class Handler:
    """The gate's endpoint; every key it knows is redacted from what is stored."""

    def __init__(
        self,
        key: str,
        upstreams: Mapping[str, Upstream],
        meter: Meter,
        writer: Executor,
        client: Callable[[], httpx.AsyncClient],
        reader: Callable[[], Reader],
        intake: Callable[[], Intake],
        on_call: Callable[[Call, _Exchange | None], None],
    ) -> None:
        self.key, self.upstreams, self.meter, self.writer, self.client = key, upstreams, meter, writer, client
        self.reader, self.intake, self.on_call = reader, intake, on_call
        self.secrets = (key, *(upstream.key for upstream in upstreams.values() if upstream.key))
        self.in_flight = 0  # calls on their way, from before their bodies are read (touched on the gateway's loop only)
        self.reading = 0  # bytes of this gate's large bodies being read in the reader's child

    def redact(self, text: str) -> str:
        return redacted(text, self.secrets)

    async def serve(self, request: Request) -> Response:
        family, rest = request.path_params["family"], request.path_params["rest"]
        if family not in FAMILIES or family not in self.upstreams:
            return JSONResponse(error_body("openai", 404, "not_found", f"no model API at /{family}"), 404)
        if self.key not in presented_keys(request.headers, request.query_params):
            message = "fleet gateway: the request does not carry this attempt's key"
            return JSONResponse(error_body(family, 401, "authentication_error", message), 401, NO_RETRY)
        if PLAIN_PATH.fullmatch(rest) is None or any(part in (".", "..") for part in rest.split("/")):
            message = f"fleet gateway: /{family}/{rest[:200]!r} is not a model API path"
            return JSONResponse(error_body(family, 403, "permission_error", message), 403, NO_RETRY)
        if not passes(request.method, family, rest):
            message = f"fleet gateway: only model calls pass, not {request.method} /{family}/{rest}"
            return JSONResponse(error_body(family, 403, "permission_error", message), 403, NO_RETRY)
        if self.in_flight >= MAX_CALLS_AT_ONCE:  # before the body is read: the gate's places bound its bodies
            message = f"fleet gateway: at most {MAX_CALLS_AT_ONCE} model calls of an attempt at once"
            return JSONResponse(error_body(family, 429, "rate_limit_error", message), 429, {"retry-after": "1"})
        place = _Place()
        self.in_flight += 1
        try:
            answer = await self._placed(request, family, rest, place)
        except BaseException:
            self._free(place)
            raise
        if not isinstance(answer, StreamingResponse):  # a stream frees its place when it ends
            self._free(place)
        return answer

    async def _placed(self, request: Request, family: str, rest: str, place: _Place) -> Response:
        try:
            body = await received(self.intake(), self, request.stream(), request.headers.get("content-length", ""))
        except TooLarge:
            return JSONResponse(error_body(family, 413, "request_too_large", "request over 32 MiB"), 413, NO_RETRY)
        except Cut as error:  # its connection is closed: what it would still send is not read
            return _busy(family, error, {"connection": "close"})
        except Full as error:
            return _busy(family, error)
        except TooSlow as error:  # its connection is closed: what it would still send is not read
            message = f"fleet gateway: {error}"
            return JSONResponse(error_body(family, 408, "request_timeout", message), 408, {"connection": "close"})
        except ClientDisconnect:
            return Response(status_code=400)  # the client is gone: nobody reads this
        wire = wire_of(family, rest)
        if wire is None:
            return await self._forward(request, family, rest, body, place, None)
        return await self._metered(request, family, rest, wire, body, place)

    @property
    def receiving(self) -> int:
        """The bytes of this gate's bodies being received."""
        return self.intake().of(self)

    async def _metered(
        self, request: Request, family: str, rest: str, wire: Wire, body: bytes, place: _Place
    ) -> Response:
        try:
            asked = await self._read(family, rest, wire, body)
        except (Busy, ReadFailed) as error:
            return _busy(family, error)
        except TooHeavy as error:
            message = f"fleet gateway: request refused: {error}"
            return JSONResponse(error_body(family, 413, "request_too_large", message), 413, NO_RETRY)
        exchange = _Exchange(family, wire, asked.model, asked.streamed, "", time.monotonic(), Tally(wire), place)
        place.hold.usd = self.meter.hold(exchange.model, len(body), asked.output_tokens or 0)
        try:
            refusal = await asyncio.get_running_loop().run_in_executor(
                self.writer, self._admit, exchange.model, place.hold
            )
            if refusal is not None:
                self._free(place)
                return self._refuse(exchange, refusal)
            exchange.strip_usage, sent = asked.sent is not None, asked.sent or body
            exchange.request, exchange.request_chars = asked.record, len(sent)
            unasked = body if exchange.strip_usage else None
            return await self._forward(request, family, rest, sent, place, exchange, unasked)
        except BaseException as error:
            self._finish(exchange, 502, f"the call ended before its answer: {type(error).__name__}", "")
            raise

    def _admit(self, model: str, hold: Hold) -> str | None:
        """On the gate's writer thread, after every call of the gate recorded or admitted so far; the meter counts what
        every call in flight of the ticket holds as spent (a burst cannot all pass a nearly spent budget, nor two
        attempts of a ticket on two workers). A call cut while it waits is recorded after this, on this thread: the
        hold is marked written here, for its record to let go of."""
        refusal = self.meter.admit(model, hold.usd)
        hold.written = refusal is None
        return refusal

    async def _read(self, family: str, rest: str, wire: Wire, body: bytes) -> Asked:
        """What the request asks for; one gate's large bodies take at most MAX_REQUEST_BYTES of the reader's line, so
        an agent's large body waits behind at most one of the largest of each other agent."""
        large = len(body) if len(body) > LARGE_BYTES else 0
        if self.reading + large > MAX_REQUEST_BYTES:
            raise Busy(f"this attempt's large request bodies already being read reach {MAX_REQUEST_BYTES // 2**20} MiB")
        self.reading += large
        try:
            return await self.reader().read(family, rest, wire, body, self.secrets)
        finally:
            self.reading -= large

    def _refuse(self, exchange: _Exchange, reason: str) -> Response:
        kind = {"anthropic": "billing_error", "gemini": "RESOURCE_EXHAUSTED"}.get(exchange.family, "insufficient_quota")
        self.on_call(Call(exchange.wire, exchange.model, exchange.streamed, 402, None, 0.0, reason, "", ""), exchange)
        return JSONResponse(error_body(exchange.family, 402, kind, f"fleet gateway: {reason}"), 402, NO_RETRY)

    async def _forward(
        self,
        request: Request,
        family: str,
        rest: str,
        body: bytes,
        place: _Place,
        exchange: _Exchange | None,
        unasked: bytes | None = None,
    ) -> Response:
        """Send the request on and answer with what comes back; `unasked` is the body as the client sent it, for an
        OpenAI-compatible server that refuses the stream_options the gateway added (the call then has no usage)."""
        upstream = self.upstreams[family]
        query: list[tuple[str, str | int | float | bool | None]] = [
            (name, value) for name, value in request.query_params.multi_items() if name != "key"
        ]
        base = httpx.URL(upstream.base_url)
        url = base.copy_with(path=base.path.rstrip("/") + "/" + rest).copy_merge_params(query)
        outgoing = self.client().build_request(
            request.method, url, content=body, headers=upstream_headers(family, request.headers, upstream.key)
        )
        try:
            answer = await self.client().send(outgoing, stream=True)
        except httpx.HTTPError as error:
            reason = f"model server {url.copy_with(query=None)}: unreachable ({type(error).__name__}: {error})"
            if exchange is not None:
                self._finish(exchange, 502, reason, "")
            return JSONResponse(error_body(family, 502, "api_error", f"fleet gateway: {reason}"), 502)
        if unasked is not None and answer.status_code == 400 and b"stream_options" in await answer.aread():
            await answer.aclose()
            assert exchange is not None
            exchange.strip_usage = False
            return await self._forward(request, family, rest, unasked, place, exchange)
        headers = answer_headers(answer.headers)
        if exchange is None:
            return StreamingResponse(self._passthrough(answer, place), answer.status_code, headers)
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(self._events(answer, exchange), answer.status_code, headers)
        try:
            content = await answer.aread()
        finally:
            await answer.aclose()
        record, unread = await self._answered(exchange, content)
        self._finish(exchange, answer.status_code, unread, record)
        return Response(content, answer.status_code, headers)

    async def _answered(self, exchange: _Exchange, content: bytes) -> tuple[str, str | None]:
        """Read a whole answer into the call's tally (a large one in the reader's child, off the loop that serves
        every gate): the answer as stored, and why it could not be read (then all of it is charged as output)."""
        try:
            exchange.tally, record = await self.reader().answer(exchange.wire, content, self.secrets)
            return record, None
        except (Busy, ReadFailed, TooHeavy) as error:
            exchange.tally.said = len(content)
            return f"[{len(content)} bytes not stored]", f"the answer could not be read: {error}"

    async def _passthrough(self, answer: httpx.Response, place: _Place) -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            self._free(place)
            await answer.aclose()

    async def _events(self, answer: httpx.Response, exchange: _Exchange) -> AsyncIterator[bytes]:
        """Pass the stream on event by event, reading each; record the call however the stream ends."""
        splitter, seen, error = EventSplitter(), list[str](), None
        try:
            async for chunk in answer.aiter_raw():
                passed = [event.raw for event in splitter.feed(chunk) if self._pass(event, exchange, seen)]
                if passed:
                    yield b"".join(passed)
            if tail := [event.raw for event in splitter.flush() if self._pass(event, exchange, seen)]:
                yield b"".join(tail)
        except (httpx.HTTPError, asyncio.CancelledError, GeneratorExit) as exc:
            error = f"the stream was cut: {type(exc).__name__}"
            raise
        finally:
            await answer.aclose()
            self._finish(exchange, answer.status_code, error, "".join(seen))

    def _pass(self, event: Event, exchange: _Exchange, seen: list[str]) -> bool:
        if exchange.kept < KEPT_BYTES * 4:  # a long stream's record is cut to KEPT_BYTES anyway: hold no more
            text = event.raw.decode("utf-8", "replace")
            seen.append(text)
            exchange.kept += len(text)
        data = parsed_json(event.data) if event.data and event.data != "[DONE]" else None
        exchange.tally.event(event.name, data)
        return not (exchange.strip_usage and _usage_chunk(data))

    def _free(self, place: _Place) -> bool:
        """Free the call's place and hold (once); False when they were freed before."""
        if place.freed:
            return False
        place.freed = True
        self.in_flight -= 1
        return True

    def _finish(self, exchange: _Exchange, status: int, error: str | None, response: str) -> None:
        if not self._free(exchange.place):
            return
        tally = exchange.tally
        cut = error is not None
        error = error or tally.error or (None if status < 400 else f"HTTP {status}")
        usage = tally.usage
        if status < 400 and (usage is None or cut):
            usage, error = _charged(tally, exchange.request_chars, error)
        call = Call(
            wire=exchange.wire,
            model=tally.model or exchange.model,
            streamed=exchange.streamed,
            status=status,
            usage=usage,
            duration=time.monotonic() - exchange.started,
            error=error,
            request=exchange.request,
            response=bounded(self.redact(response)),
            hold=exchange.place.hold,
        )
        self.on_call(call, exchange)


def _busy(family: str, error: Exception, headers: Mapping[str, str] | None = None) -> Response:
    message = f"fleet gateway: {error}; retry"
    return JSONResponse(
        error_body(family, 503, "overloaded_error", message), 503, {"retry-after": "1", **(headers or {})}
    )
