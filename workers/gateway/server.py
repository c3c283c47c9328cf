"""The metering model gateway: every agent's model calls pass through it, outside the agent's sandbox.

Each attempt gets a gate: an HTTP listener on the worker's 127.0.0.1 at a port of its own, which serves the
attempt's placeholder key only. A sandboxed agent reaches that port through its egress relay (the relay listens on
the same port inside the sandbox and tunnels through the attempt's egress socket, whose allow-list names it), an
unsandboxed agent or the in-process llm agent directly: the same base URLs work everywhere. The gate swaps the
placeholder for the real key (from the worker's environment), forwards to the provider, reads the usage the
provider billed from its answer or stream, and hands each call to the attempt's Meter, which records it and says
when the ticket's budget has run out (then calls are refused with 402 in the provider's own error shape).

One ModelGateway per worker process, started lazily (after a prefork worker has forked): an asyncio loop on a
daemon thread, uvicorn serving each gate on it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from workers.gateway.handler import Call, Handler, Meter
from workers.gateway.protocols import Upstream
from workers.loop_thread import CALL_SECONDS, LoopThread

log = logging.getLogger(__name__)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)  # a model may think for minutes


class GatewayGate:
    """One attempt's way to its models: a port, a placeholder key, its upstreams and its meter, until close()."""

    def __init__(self, gateway: ModelGateway, upstreams: Mapping[str, Upstream], meter: Meter) -> None:
        self.gateway, self.upstreams, self.meter = gateway, dict(upstreams), meter
        self.key = "fleet-" + secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._refused: str | None = None
        self._client: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.port = 0
        # The meter's database work, in order and off the event loop that serves every gate of the worker.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-gateway-meter")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> tuple[Call, ...]:
        """Every metered call so far, in order."""
        with self._lock:
            return tuple(self._calls)

    @property
    def refused(self) -> str | None:
        """Why the gate refused a call (the budget ran out), or None."""
        return self._refused

    def redact(self, text: str) -> str:
        """text without the real keys or the placeholder."""
        for secret in [self.key, *(upstream.key for upstream in self.upstreams.values())]:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def flush(self) -> None:
        """Wait until every call that has ended is written (the records are written in order, off the loop)."""
        if not self._closed:
            self._writer.submit(lambda: None).result(CALL_SECONDS)

    def close(self) -> None:
        """Stop serving; calls still open are cut (and recorded), and every record is written. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self.gateway.loop.call(self._stop())
            self._writer.shutdown(wait=True)

    def __enter__(self) -> GatewayGate:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _record(self, call: Call, exchange: object) -> None:
        with self._lock:
            self._calls.append(call)
            if call.status == 402 and call.error:
                self._refused = call.error
        self._writer.submit(self._write, call)

    def _write(self, call: Call) -> None:
        try:
            self.meter.record(call)
        except Exception:
            log.exception("the model gateway could not record a call")

    def _http(self) -> httpx.AsyncClient:
        assert self._client is not None
        return self._client

    async def _start(self) -> None:
        self._client = httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)
        handler = Handler(self.key, self.upstreams, self.meter, self._writer, self._http, self.redact, self._record)
        app = Starlette(routes=[Route("/{family}/{rest:path}", handler.serve, methods=METHODS)])
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that name it, and without it a keep-alive
        # client waits out a delayed ACK (40 ms) on every answer.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[listener]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def _stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


class ModelGateway:
    """The worker process's gateway: one asyncio loop on a daemon thread, serving every open gate."""

    def __init__(self) -> None:
        self.loop = LoopThread("fleet-gateway")

    def open(self, upstreams: Mapping[str, Upstream], meter: Meter) -> GatewayGate:
        """A new gate for one attempt, listening until it is closed."""
        gate = GatewayGate(self, upstreams, meter)
        self.loop.call(gate._start())
        return gate

    def close(self) -> None:
        """Stop the loop's thread (gates still open stop serving; a later open() starts a new loop)."""
        self.loop.stop()
