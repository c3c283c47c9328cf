"""The metering model gateway: every agent's model calls pass through it, outside the agent's sandbox.

One HTTP listener per worker process, on 127.0.0.1 at a port of its own, and a gate per attempt: the attempt's
placeholder key, its upstreams and its meter. A request is served by the gate whose key it carries, and refused
when it carries none: the key, unguessable and the attempt's alone, is what tells one attempt from another. A
sandboxed agent reaches the port through its egress relay (the relay listens on the same port inside the sandbox
and tunnels through the attempt's egress socket, whose allow-list names it), an unsandboxed agent or the in-process
llm agent directly: the same base URLs work everywhere. The gate swaps the placeholder for the real key (from the
worker's environment), forwards to the provider, reads the usage the provider billed from its answer or stream,
and hands each call to the attempt's Meter, which records it and says when the ticket's budget has run out (then
calls are refused with 402 in the provider's own error shape).

The listener and the client to the providers are started once, lazily (after a prefork worker has forked), on an
asyncio loop on a daemon thread: opening and closing a gate costs a dictionary entry, not a server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workers.gateway.handler import NO_RETRY, Call, Handler, Meter
from workers.gateway.intake import Intake
from workers.gateway.protocols import FAMILIES, Upstream, error_body, presented_keys
from workers.gateway.reader import Reader
from workers.gateway.writer import GateWriter
from workers.loop_thread import CALL_SECONDS, LoopThread

log = logging.getLogger(__name__)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)  # a model may think for minutes
# Every gate of the worker shares one client: a slot count of agents each streaming from a provider at once.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=64)


class GatewayGate:
    """One attempt's way to its models: a placeholder key, its upstreams and its meter, until close()."""

    def __init__(self, gateway: ModelGateway, upstreams: Mapping[str, Upstream], meter: Meter) -> None:
        self.gateway, self.upstreams, self.meter = gateway, dict(upstreams), meter
        self.key = "fleet-" + secrets.token_urlsafe(24)
        self.port = gateway.port
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._refused: str | None = None
        self._closed = False
        self.requests: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()  # in flight, cut by close()
        # The meter's database work, in order and off the event loop that serves every gate of the worker.
        self._writer = GateWriter()
        self._let_go(meter.open)  # before any call: what an earlier run of the attempt held counts no more
        self.handler = Handler(
            self.key, self.upstreams, meter, self._writer, gateway.client, gateway.reader, gateway.intake, self._record
        )

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
        return self.handler.redact(text)

    def flush(self) -> None:
        """Wait until every call that has ended is written (the records are written in order, off the loop)."""
        if not self._closed and self._writer.started:
            self._writer.submit(lambda: None).result(CALL_SECONDS)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop serving; calls still open are cut (and recorded), and every record is written. Safe to call twice.

        A request that finds the gate adds itself to its requests before it looks at closed, and close sets
        closed before it looks at the requests: so a call is either refused or seen here and cut."""
        if not self._closed:
            self._closed = True
            self.gateway.forget(self)
            try:
                if any(not request.done() for request in self.requests):  # none after the gateway's own close
                    self.gateway.loop.call(self.gateway.cut(self))
            finally:
                self._writer.submit_if_started(lambda: self._let_go(self.meter.release))  # none: no call held
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

    def _let_go(self, holds: Callable[[], None]) -> None:
        try:
            holds()
        except Exception:
            log.exception("the model gateway could not let go of what an attempt's calls held")

    def _write(self, call: Call) -> None:
        try:
            self.meter.record(call)
        except Exception:
            log.exception("the model gateway could not record a call")


class ModelGateway:
    """The worker process's gateway: one listener and one client on an asyncio loop, serving every open gate."""

    def __init__(self, reading: Callable[[], Reader] = Reader, receiving: Callable[[], Intake] = Intake) -> None:
        self.loop = LoopThread("fleet-gateway")
        self.port = 0
        self._gates: dict[str, GatewayGate] = {}
        self._client: httpx.AsyncClient | None = None
        self._reading, self._reader = reading, reading()
        self._receiving, self._intake = receiving, receiving()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._serving_on: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the listener, once per process: the first gate's open() does when nothing did before it."""
        if self._server is None or self._pid != os.getpid():  # the first gate, or the first after a fork
            with self._starting:  # one thread starts the listener; the slots starting beside it wait here
                if self._server is None or self._pid != os.getpid():
                    self.loop.call(self._listening())

    def open(self, upstreams: Mapping[str, Upstream], meter: Meter) -> GatewayGate:
        """A new gate for one attempt, served until it is closed."""
        self.start()
        gate = GatewayGate(self, upstreams, meter)
        self._gates[gate.key] = gate
        return gate

    def close(self) -> None:
        """Stop serving and the loop's thread (gates still open stop serving; a later open() starts anew). Waits
        for a start in progress, which would otherwise leave its listener open."""
        with self._starting:
            if self._server is not None and self._pid == os.getpid():
                self.loop.call(self._stop())
            self.loop.stop()

    def client(self) -> httpx.AsyncClient:
        """The client to the providers, made by the first call that needs one (on the gateway's loop): a worker
        whose agents call no model never pays for closing it (its first close imports anyio's backend, 33 ms)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, trust_env=False)
        return self._client

    def reader(self) -> Reader:
        """What reads the gates' request bodies (its child process is started by the first large body)."""
        return self._reader

    def intake(self) -> Intake:
        """What counts the bytes of request bodies being received, for every gate of the process."""
        return self._intake

    def forget(self, gate: GatewayGate) -> None:
        """No request finds the gate from now on."""
        self._gates.pop(gate.key, None)

    async def cut(self, gate: GatewayGate) -> None:
        """Cut the gate's calls in flight (each is recorded as cut)."""
        await _cancelled(gate.requests)

    async def _listening(self) -> None:
        """Start the listener on this loop, once per loop (a forked child or a restart gets new; so does its client,
        made at the first call that needs one)."""
        loop = asyncio.get_running_loop()
        if self._serving_on is loop:
            return
        self._gates.clear()
        self._client = None  # a forked child's copy of its parent's client is not its own
        self._reader = self._reading()  # nor its reading process
        self._intake = self._receiving()  # nor the bodies its parent was receiving
        app = Starlette(routes=[Route("/{family}/{rest:path}", self._serve, methods=METHODS)])
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that name it, and without it a keep-alive
        # client waits out a delayed ACK (40 ms) on every answer.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
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
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[listener]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        self._server, self._task, self._serving_on, self.port = server, task, loop, listener.getsockname()[1]
        self._pid = os.getpid()

    async def _stop(self) -> None:
        """What uvicorn's own shutdown does, without its pauses (up to a tick to see should_exit, then 0.1 s for the
        connections to finish), which made a stopping worker exit 0.2 s later. The listener refuses at once; the
        open gates' calls in flight are cut and recorded, as their gates' close() would (the agent sees its
        connection closed); then every other request of uvicorn's is cancelled and idle connections are closed."""
        server, task = self._server, self._task
        self._server, self._task, self._serving_on = None, None, None
        if server is not None and task is not None:
            for listening in server.servers:
                listening.close()
            for gate in list(self._gates.values()):
                await self.cut(gate)
            await _cancelled(server.server_state.tasks)
            for connection in list(server.server_state.connections):
                connection.shutdown()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._reader.close()
        client, self._client = self._client, None  # last: no call is left to make a new one
        if client is not None:
            await client.aclose()

    async def _serve(self, request: Request) -> Response:
        keys = presented_keys(request.headers, request.query_params)
        gate = next((self._gates[key] for key in keys if key in self._gates), None)
        if gate is None:
            return _refused(request.path_params["family"])
        task = asyncio.current_task()  # the request's own (uvicorn runs each in one; a stream's body in its child)
        if task is not None:
            gate.requests.add(task)
        if gate.closed:
            return _refused(request.path_params["family"])
        return await gate.handler.serve(request)


async def _cancelled(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks not done yet and wait until each has ended."""
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def _refused(family: str) -> Response:
    if family not in FAMILIES:
        return JSONResponse(error_body("openai", 404, "not_found", f"no model API at /{family}"), 404)
    message = "fleet gateway: the request does not carry an open attempt's key"
    return JSONResponse(error_body(family, 401, "authentication_error", message), 401, NO_RETRY)
