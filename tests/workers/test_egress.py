"""The egress proxy and its in-sandbox relay, on real sockets: a local HTTP server stands in for a model endpoint, a
bare TCP listener for Redis, and the last test runs the relay and a probe inside bubblewrap's network namespace."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.workers.conftest import Listener, read_head, status
from workers.egress import EgressGate, EgressProxy
from workers.egress_rules import (
    SETTING,
    EgressError,
    EgressEvent,
    EgressLimits,
    Verdict,
)
from workers.pipeline.agent_plan import close_gate

IN_CI = os.environ.get("CI", "").lower() == "true"


def read_all(sock: socket.socket) -> bytes:
    """Everything until the other side closes."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def unix_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def exchange(path: Path, request: bytes) -> bytes:
    """Send a raw request to a gate's socket; the whole answer, up to the close."""
    with unix_connect(path) as sock:
        sock.sendall(request)
        return read_all(sock)


def open_tunnel(path: Path, authority: str) -> socket.socket:
    """A CONNECT tunnel through the gate, its 200 read."""
    sock = unix_connect(path)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert status(read_head(sock)) == 200
    return sock


def wait_for_events(gate: EgressGate, count: int) -> tuple[EgressEvent, ...]:
    """The gate's events once there are count of them (an allowed one is recorded when its tunnel ends)."""
    deadline = time.monotonic() + 10
    while len(gate.events) < count:
        assert time.monotonic() < deadline, gate.events
        time.sleep(0.02)
    return gate.events


def test_plain_http_through_the_relay_and_the_proxy_reaches_an_allowed_server(
    gate: EgressGate, front: int, model_port: int
) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{front}"}))
    with opener.open(f"http://127.0.0.1:{model_port}/v1/models?x=1", timeout=10) as response:
        assert response.read() == b"model says hi to /v1/models?x=1"
    with opener.open(f"http://127.0.0.1:{model_port}/v1/messages", data=b'{"q": 1}', timeout=10) as response:
        assert response.read() == b'{"q": 1}'
    events = wait_for_events(gate, 2)
    assert [(e.verdict, e.destination) for e in events] == [(Verdict.ALLOWED, f"127.0.0.1:{model_port}")] * 2
    assert all(e.bytes_up > 0 and e.bytes_down > 0 for e in events)


def test_large_bodies_go_through_whole_and_a_denied_post_gets_its_403(
    gate: EgressGate, front: int, model_port: int, redis: Listener
) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{front}"}))
    body = os.urandom(3 * 2**20)
    with opener.open(f"http://127.0.0.1:{model_port}/v1/messages", data=body, timeout=10) as response:
        assert response.read() == body
    for data in (b'{"SET": "x"}', body):  # the 403 comes before the body is read, whatever its size
        with pytest.raises(urllib.error.HTTPError) as denied:
            opener.open(f"http://127.0.0.1:{redis.port}/", data=data, timeout=10)
        assert denied.value.code == 403
    assert not redis.contacted()
    (allowed,) = [e for e in wait_for_events(gate, 3) if e.verdict is Verdict.ALLOWED]
    assert allowed.bytes_up > len(body) and allowed.bytes_down > len(body)


def test_a_connect_tunnel_to_an_allowed_server_carries_bytes_both_ways(gate: EgressGate, model_port: int) -> None:
    with open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}") as tunnel:
        tunnel.sendall(b"GET /tunnelled HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
        answer = read_all(tunnel)
    assert status(answer) == 200 and answer.endswith(b"model says hi to /tunnelled")
    (event,) = wait_for_events(gate, 1)
    assert event.verdict is Verdict.ALLOWED and event.bytes_down == len(answer)
    expected = f"[fleet] egress allowed: 127.0.0.1:{model_port} ({event.bytes_up} bytes up, {len(answer)} down)"
    assert event.line() == expected


DENIED = [
    ("CONNECT 127.0.0.1:{redis} HTTP/1.1\r\n\r\n", "127.0.0.1:{redis}"),
    ("GET http://127.0.0.1:{redis}/ HTTP/1.1\r\nHost: 127.0.0.1:{redis}\r\n\r\n", "127.0.0.1:{redis}"),
    ("CONNECT [::ffff:127.0.0.1]:{redis} HTTP/1.1\r\n\r\n", "[::ffff:7f00:1]:{redis}"),
    ("CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", "169.254.169.254:80"),
    ("GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n", "169.254.169.254:80"),
    ("CONNECT api.example.com:443 HTTP/1.1\r\n\r\n", "api.example.com:443"),
    ("CONNECT 127.0.0.2:{model} HTTP/1.1\r\n\r\n", "127.0.0.2:{model}"),  # the allowed port, another address
    ("CONNECT localhost:{model} HTTP/1.1\r\n\r\n", "localhost:{model}"),  # the allowed server, under another name
]


@pytest.mark.parametrize(("request_text", "destination"), DENIED)
def test_destinations_off_the_list_get_403_and_are_never_contacted(
    gate: EgressGate, redis: Listener, model_port: int, request_text: str, destination: str
) -> None:
    ports = {"redis": redis.port, "model": model_port}
    answer = exchange(gate.socket_path, request_text.format(**ports).encode())
    expected = destination.format(**ports)
    assert status(answer) == 403
    assert answer.split(b"\r\n\r\n", 1)[1].decode().count("\n") == 1  # one line
    assert expected in answer.decode() and SETTING in answer.decode()
    assert not redis.contacted()
    assert [e.line() for e in gate.events] == [f"[fleet] egress denied: {expected} (not on the allow-list)"]


def test_a_listed_name_that_resolves_to_loopback_is_refused(
    proxy: EgressProxy, socket_dir: Path, redis: Listener
) -> None:
    with proxy.open(socket_dir / "egress.sock", [f"localhost:{redis.port}"]) as gate:
        tunnel = exchange(gate.socket_path, f"CONNECT localhost:{redis.port} HTTP/1.1\r\n\r\n".encode())
        plain = exchange(gate.socket_path, f"GET http://localhost:{redis.port}/ HTTP/1.1\r\n\r\n".encode())
        events = gate.events
    assert status(tunnel) == status(plain) == 403
    assert b"localhost resolves to " in tunnel and b"a loopback address" in tunnel
    assert not redis.contacted()
    assert [e.verdict for e in events] == [Verdict.DENIED] * 2


MALFORMED = [
    b"HELLO\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # origin-form: not a proxy request
    b"GET https://api.example.com/ HTTP/1.1\r\n\r\n",  # https must use CONNECT
    b"GET http://user@api.example.com/ HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
    b"CONNECT ::1:80 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:80 HTTP/2.0\r\n\r\n",
    b"CONNECT bad_host!:80 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nno colon here\r\n\r\n",
    b"CONNECT 127.0.0.1:80 HTTP/1.1\r\n folded: line\r\n\r\n",
    "GET http://café.example/ HTTP/1.1\r\n\r\n".encode(),
]


@pytest.mark.parametrize("request_bytes", MALFORMED)
def test_malformed_requests_get_400_and_are_closed(gate: EgressGate, request_bytes: bytes) -> None:
    answer = exchange(gate.socket_path, request_bytes)
    assert status(answer) == 400, answer
    assert [e.verdict for e in gate.events] == [Verdict.REJECTED]


def test_oversized_headers_get_431(gate: EgressGate, model_port: int) -> None:
    padding = "x" * (17 * 1024)
    answer = exchange(gate.socket_path, f"CONNECT 127.0.0.1:{model_port} HTTP/1.1\r\nX: {padding}\r\n\r\n".encode())
    assert status(answer) == 431
    assert gate.events[0].line() == "[fleet] egress rejected: request (request headers over 16384 bytes)"


def test_an_allowed_destination_that_is_down_gets_502(proxy: EgressProxy, socket_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    with proxy.open(socket_dir / "egress.sock", [f"127.0.0.1:{closed_port}"]) as gate:
        answer = exchange(gate.socket_path, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode())
    assert status(answer) == 502
    assert gate.events[0].verdict is Verdict.FAILED


def test_a_gate_holds_at_most_max_connections(socket_dir: Path, model_port: int) -> None:
    with (
        EgressProxy(EgressLimits(max_connections=2)) as proxy,
        proxy.open(socket_dir / "egress.sock", [f"127.0.0.1:{model_port}"]) as gate,
    ):
        first, second = (open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}") for _ in range(2))
        crowded = exchange(gate.socket_path, f"CONNECT 127.0.0.1:{model_port} HTTP/1.1\r\n\r\n".encode())
        assert status(crowded) == 503
        first.close()
        wait_for_events(gate, 2)  # the 503, then the first tunnel's end
        open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}").close()
        second.close()


def test_an_idle_tunnel_is_cut(socket_dir: Path, model_port: int) -> None:
    with (
        EgressProxy(EgressLimits(idle_seconds=0.3)) as proxy,
        proxy.open(socket_dir / "egress.sock", [f"127.0.0.1:{model_port}"]) as gate,
        open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}") as tunnel,
    ):
        started = time.monotonic()
        assert tunnel.recv(1) == b""
        assert 0.2 < time.monotonic() - started < 5


def test_closing_a_gate_removes_its_socket_and_cuts_its_tunnels(gate: EgressGate, model_port: int) -> None:
    lines: list[str] = []
    gate.on_event = lambda event: lines.append(event.line())
    with open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}") as tunnel:
        gate.close()
        assert tunnel.recv(1) == b""
    assert not gate.socket_path.exists()
    assert lines == [f"[fleet] egress allowed: 127.0.0.1:{model_port} (0 bytes up, 0 down)"]
    gate.close()  # twice is harmless


def test_the_socket_folder_must_be_private(proxy: EgressProxy, socket_dir: Path) -> None:
    socket_dir.chmod(0o755)
    with pytest.raises(EgressError, match="must be private"):
        proxy.open(socket_dir / "egress.sock", ["127.0.0.1:1"])


BAD_ENTRIES = ["api.anthropic.com", "*.10.0.0.1:443", "http://x.com:80", "[::1]", "::1:80", "a b:1", "*:443"]


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_a_bad_allow_list_entry_is_refused(proxy: EgressProxy, socket_dir: Path, entry: str) -> None:
    with pytest.raises(EgressError, match="bad egress allow-list entry"):
        proxy.open(socket_dir / "egress.sock", [entry])


def test_a_gate_whose_socket_the_sandbox_replaced_still_closes_and_cuts_its_tunnels(
    proxy: EgressProxy, socket_dir: Path, model_port: int
) -> None:
    """The gate's folder is bound into the sandbox writable: an agent that put a folder where its socket was made the
    close raise, leaving its tunnels open and the attempt's model gate unclosed (the worker then hung)."""
    gate = proxy.open(socket_dir / "gate" / "egress.sock", [f"127.0.0.1:{model_port}"])
    with open_tunnel(gate.socket_path, f"127.0.0.1:{model_port}") as tunnel:
        gate.socket_path.unlink()
        (gate.socket_path / "deep").mkdir(parents=True)
        gate.close()
        assert tunnel.recv(1) == b""
    assert (gate.socket_path / "deep").is_dir()  # what the agent made is its folder's to remove (close_gate)


def test_an_agents_gate_folder_goes_with_whatever_the_agent_left_there(proxy: EgressProxy, socket_dir: Path) -> None:
    """Left, it stayed on the host's /tmp (memory, often) until the worker stopped: a write outside the attempt."""
    gate = proxy.open(socket_dir / "7" / "egress.sock", ["127.0.0.1:1"])
    (gate.socket_path.parent / "left.bin").write_bytes(b"x" * 4096)
    gate.socket_path.unlink()
    gate.socket_path.mkdir()
    close_gate(gate)
    assert not gate.socket_path.parent.exists()
