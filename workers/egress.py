"""The egress proxy: a sandboxed agent's only way out of its network namespace, to its allow-list and nowhere else.

An agent command runs with `--unshare-net` (only a private loopback), so not even the worker's Redis, PostgreSQL or
web app on 127.0.0.1 is reachable. Its model endpoint is reached through this proxy, as in Codex CLI and Anthropic's
sandbox-runtime: the worker serves one Unix socket per attempt (an EgressGate, in a 0700 folder that is bind-mounted
into the sandbox); inside, workers/relay.py listens on 127.0.0.1:PORT, forwards each connection to that socket and
starts the agent with HTTP(S)_PROXY/ALL_PROXY pointing at itself.

The proxy speaks HTTP/1.1 proxy requests: `CONNECT host:port` opens a tunnel (https), and an absolute-form request
(`GET http://host:port/path`) is sent on in origin-form with `Connection: close`, then bytes flow both ways.
Allow-list entries are `host:port`, `[v6]:port` or `*.example.com:port` (subdomains only, not example.com itself).
A name is resolved here and refused when any of its addresses is loopback, private, link-local, multicast,
unspecified or the cloud metadata address (DNS rebinding an allowed name to Redis); the proxy connects to the
checked address, never to a fresh resolution. An IP literal entry allows exactly that address and port, such as a
local model server on 127.0.0.1:8123. TLS is not inspected: an allowed CONNECT carries whatever the agent sends.

One EgressProxy per worker process, started lazily on first use (after a prefork worker has forked): an asyncio
loop on a daemon thread serves every open gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType

from workers.egress_rules import (
    SETTING,
    AllowList,
    Destination,
    EgressError,
    EgressEvent,
    EgressLimits,
    IPAddress,
    ProxyRequest,
    Refused,
    Verdict,
    address_problem,
    parse_request,
)
from workers.loop_thread import LoopThread

log = logging.getLogger(__name__)

RELAY_SCRIPT = Path(__file__).with_name("relay.py")
HEAD_END = b"\r\n\r\n"
CHUNK_BYTES = 65_536
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class _Flow:
    """Bytes moved one way through a tunnel, and when last."""

    moved: int = 0
    last: float = field(default_factory=time.monotonic)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flow: _Flow) -> None:
    """Copy reader to writer until end of file, then pass the end of file on (a half-close)."""
    while data := await reader.read(CHUNK_BYTES):
        writer.write(data)
        flow.moved += len(data)
        flow.last = time.monotonic()
        await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


async def _answer(writer: asyncio.StreamWriter, status: int, body: str) -> None:
    """Send a short plain-text response; the connection is closed after it."""
    payload = body.encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    with contextlib.suppress(OSError):
        await writer.drain()


def _private_folder(folder: Path) -> None:
    """Create the socket's folder 0700; EgressError if it exists and others may enter it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) & 0o077:
        raise EgressError(f"the egress socket's folder {folder} must be private (mode 0700)")


class EgressGate:
    """One attempt's way out: a Unix socket the proxy serves with one allow-list, until close()."""

    def __init__(
        self,
        proxy: EgressProxy,
        socket_path: Path,
        allow: AllowList,
        on_event: Callable[[EgressEvent], None] | None,
    ) -> None:
        self.proxy, self.socket_path, self.allow, self.on_event = proxy, socket_path, allow, on_event
        self.limits = proxy.limits
        self._events: list[EgressEvent] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def events(self) -> tuple[EgressEvent, ...]:
        """The decisions so far (the first `max_events`); allowed connections appear once they end."""
        with self._lock:
            return tuple(self._events)

    @property
    def dropped_events(self) -> int:
        """How many decisions came after the first `max_events` and were not kept."""
        return self._dropped

    def close(self) -> None:
        """Stop serving: remove the socket and cut every open tunnel. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self.proxy.loop.call(self._stop())
            self.proxy._forget(self)

    def __enter__(self) -> EgressGate:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def _start(self) -> None:
        """Listen on the socket (replacing a stale one an earlier delivery of the attempt left)."""
        self.socket_path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=self.limits.header_bytes
        )

    async def _stop(self) -> None:
        """Close the listener and the socket file, then cancel every connection."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(
            OSError
        ):  # the socket: the sandbox its folder is bound into may have put anything there
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _record(self, event: EgressEvent) -> None:
        """Keep the event (up to the limit) and tell the caller's callback, which must not break the proxy."""
        with self._lock:
            if len(self._events) < self.limits.max_events:
                self._events.append(event)
            else:
                self._dropped += 1
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("egress on_event callback failed")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from the sandbox, from its request to the end of its tunnel."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer, crowded=len(self._tasks) > self.limits.max_connections)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the agent hung up
        except asyncio.CancelledError:
            pass  # the gate closed; ending quietly, as asyncio's stream server logs a cancelled task as an error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, crowded: bool) -> None:
        """Answer the request with an error, or open the tunnel it asks for."""
        try:
            request = parse_request(await self._read_head(reader))
            if crowded:
                raise Refused(503, Verdict.REJECTED, str(request.destination), "too many open connections")
            upstream = await self._open(request.destination)
        except Refused as refusal:
            self._record(refusal.event)
            await _answer(writer, refusal.status, refusal.body())
            return
        await self._tunnel((reader, writer), upstream, request)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The request's header block, within the size and time limits."""
        try:
            async with asyncio.timeout(self.limits.header_seconds):
                return await reader.readuntil(HEAD_END)
        except asyncio.LimitOverrunError:
            detail = f"request headers over {self.limits.header_bytes} bytes"
            raise Refused(431, Verdict.REJECTED, "", detail) from None
        except TimeoutError:
            raise Refused(408, Verdict.REJECTED, "", "no complete request headers in time") from None

    async def _open(self, destination: Destination) -> Streams:
        """A connection to an allowed destination, at an address checked here; else a refusal."""
        if not self.allow.permits(destination):
            hint = f"to allow it, add it to {self.allow.setting}"
            raise Refused(403, Verdict.DENIED, str(destination), "not on the allow-list", hint)
        try:
            async with asyncio.timeout(self.limits.connect_seconds):
                return await self._resolve_and_dial(destination)
        except TimeoutError:
            detail = f"no connection within {self.limits.connect_seconds:g} s"
            raise Refused(504, Verdict.FAILED, str(destination), detail) from None

    async def _resolve_and_dial(self, destination: Destination) -> Streams:
        """Resolve (a name), check every address, then connect to the checked addresses in turn."""
        addresses = await _addresses(destination, self.allow.setting)
        failure: OSError | None = None
        for address in addresses:
            try:
                return await asyncio.open_connection(str(address), destination.port)
            except OSError as error:
                failure = error
        raise Refused(502, Verdict.FAILED, str(destination), f"cannot connect: {failure}")

    async def _tunnel(self, client: Streams, upstream: Streams, request: ProxyRequest) -> None:
        """Relay bytes both ways until they end, then record what went through."""
        up, down = _Flow(len(request.head)), _Flow()
        try:
            if request.head:
                upstream[1].write(request.head)
            else:
                client[1].write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await self._splice(client, upstream, up, down)
        finally:
            upstream[1].close()
            self._record(EgressEvent(Verdict.ALLOWED, str(request.destination), "", up.moved, down.moved))

    async def _splice(self, client: Streams, upstream: Streams, up: _Flow, down: _Flow) -> None:
        """Pump both ways; stop when both have ended, when one fails, or when neither moved for idle_seconds."""
        pumps = {
            asyncio.ensure_future(_pump(client[0], upstream[1], up)),
            asyncio.ensure_future(_pump(upstream[0], client[1], down)),
        }
        try:
            while pumps:
                idle = time.monotonic() - max(up.last, down.last)
                if idle >= self.limits.idle_seconds:
                    return
                done, pumps = await asyncio.wait(
                    pumps, timeout=self.limits.idle_seconds - idle, return_when=asyncio.FIRST_COMPLETED
                )
                if any(task.exception() is not None for task in done):
                    return
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


async def _addresses(destination: Destination, setting: str) -> list[IPAddress]:
    """An IP literal as is; a name's addresses, refused when any is loopback, private, metadata..."""
    if (literal := destination.ip) is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise Refused(502, Verdict.FAILED, str(destination), f"cannot resolve {destination.host}: {error}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos))
    for address in addresses:
        if problem := address_problem(address):
            detail = f"{destination.host} resolves to {address}, a {problem} address"
            hint = f"to reach a server on this host or network, add its IP address and port to {setting}"
            raise Refused(403, Verdict.DENIED, str(destination), detail, hint)
    return addresses


class EgressProxy:
    """The worker process's egress proxy: one asyncio loop on a daemon thread, serving every open gate."""

    def __init__(self, limits: EgressLimits | None = None) -> None:
        self.limits = limits or EgressLimits()
        self.loop = LoopThread("fleet-egress")
        self._lock = threading.Lock()
        self._gates: set[EgressGate] = set()

    def open(
        self,
        socket_path: Path,
        allow: Sequence[str],
        on_event: Callable[[EgressEvent], None] | None = None,
        setting: str = SETTING,
    ) -> EgressGate:
        """Serve socket_path (its folder made or kept 0700) with this allow-list (the setting that lists it, named
        in every refusal) until the gate is closed."""
        gate = EgressGate(self, socket_path, AllowList(allow, setting), on_event)
        _private_folder(socket_path.parent)
        self.loop.call(gate._start())
        with self._lock:
            self._gates.add(gate)
        return gate

    def close(self) -> None:
        """Close every open gate and stop the loop's thread (a later open() starts a new one)."""
        with self._lock:
            gates, self._gates = list(self._gates), set()
        for gate in gates:
            gate.close()
        self.loop.stop()

    def __enter__(self) -> EgressProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _forget(self, gate: EgressGate) -> None:
        """Drop a closed gate."""
        with self._lock:
            self._gates.discard(gate)


def relay_argv(
    python: str, relay_script: Path, socket_inside: Path, port: int, forward: Sequence[int] = ()
) -> tuple[str, ...]:
    """The argv prefix that runs a command behind the in-sandbox relay: append the command after it. Each port in
    forward is tunnelled from the sandbox's 127.0.0.1 to the worker's (the model gateway's gate)."""
    forwards = tuple(arg for gate_port in forward for arg in ("--forward", str(gate_port)))
    return (python, "-I", "-S", str(relay_script), str(socket_inside), str(port), *forwards, "--")
