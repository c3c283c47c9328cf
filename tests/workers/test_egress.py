"""The egress proxy and its in-sandbox relay, on real sockets: a local HTTP server stands in for a model endpoint, a
bare TCP listener for Redis, and the last test runs the relay and a probe inside bubblewrap's network namespace."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers import relay
from workers.egress import RELAY_SCRIPT, EgressGate, EgressProxy, relay_argv
from workers.egress_rules import (
    SETTING,
    AllowList,
    Destination,
    EgressError,
    EgressEvent,
    EgressLimits,
    Verdict,
    address_problem,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


class ModelHandler(http.server.BaseHTTPRequestHandler):
    """The stand-in model endpoint (HTTP/1.1, keep-alive): names the path it was asked for, echoes what is posted."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._reply(f"model says hi to {self.path}".encode())

    def do_POST(self) -> None:
        self._reply(self.rfile.read(int(self.headers["Content-Length"])))

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Listener:
    """A bare TCP listener standing in for Redis: it accepts nothing, it only tells whether anyone connected."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def contacted(self) -> bool:
        """Whether a connection is waiting in the backlog (the kernel completes it without accept)."""
        self.sock.settimeout(0.2)
        try:
            self.sock.accept()[0].close()
        except TimeoutError:
            return False
        return True


@pytest.fixture
def model_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ModelHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def redis() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.sock.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A private folder with a short path (a Unix socket's path has at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="fleet-egress-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def proxy() -> Iterator[EgressProxy]:
    with EgressProxy() as running:
        yield running


@pytest.fixture
def gate(proxy: EgressProxy, socket_dir: Path, model_port: int) -> Iterator[EgressGate]:
    with proxy.open(socket_dir / "egress.sock", [f"127.0.0.1:{model_port}"]) as opened:
        yield opened


@pytest.fixture
def front(gate: EgressGate) -> Iterator[int]:
    """The relay's forwarding, in this process: a TCP proxy address for urllib, in front of the gate."""
    listener = relay.listen(0)
    threading.Thread(target=relay.serve, args=(listener, str(gate.socket_path)), daemon=True).start()
    yield listener.getsockname()[1]
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything until the other side closes."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> bytes:
    """A response's header block, byte by byte so that nothing after it is consumed."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed after {head!r}"
        head += byte
    return head


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


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


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


def test_allow_list_matching() -> None:
    allow = AllowList(["API.Anthropic.com:443", "*.googleapis.com:443", "127.0.0.1:8123", "[0:0::1]:8123"])
    permitted = [
        Destination("api.anthropic.com", 443),
        Destination("generativelanguage.googleapis.com", 443),
        Destination("a.b.googleapis.com", 443),
        Destination("127.0.0.1", 8123),
        Destination("::1", 8123),
    ]
    refused = [
        Destination("api.anthropic.com", 80),
        Destination("googleapis.com", 443),
        Destination("evilgoogleapis.com", 443),
        Destination("anthropic.com", 443),
        Destination("127.0.0.1", 6379),
        Destination("localhost", 8123),
    ]
    assert all(allow.permits(d) for d in permitted)
    assert not any(allow.permits(d) for d in refused)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("160.79.104.10", None),
        ("2607:6bc0::10", None),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_relay_argv_is_a_prefix_for_the_command() -> None:
    argv = relay_argv("/usr/bin/python3", RELAY_SCRIPT, Path("/run/egress/egress.sock"), 0)
    assert argv == ("/usr/bin/python3", "-I", "-S", str(RELAY_SCRIPT), "/run/egress/egress.sock", "0", "--")


def run_relay(gate: EgressGate, code: str, **kwargs: Any) -> subprocess.Popen[str]:
    """The relay script in front of gate, running `python -c code`."""
    argv = [*relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), sys.executable, "-c", code]
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*", "HTTP_PROXY": "http://elsewhere:1"}
    return subprocess.Popen(argv, env=env, text=True, **kwargs)


def test_the_relay_sets_the_proxy_variables_and_exits_with_the_commands_status(gate: EgressGate) -> None:
    code = "import json, os; print(json.dumps(dict(os.environ))); raise SystemExit(7)"
    proc = run_relay(gate, code, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    env = json.loads(out)
    assert proc.returncode == 7
    proxies = {env[name] for name in relay.PROXY_VARIABLES}
    assert len(proxies) == 1 and proxies.pop().startswith("http://127.0.0.1:")
    assert "NO_PROXY" not in env and "no_proxy" not in env


def test_the_relay_exits_when_its_command_does_even_with_a_connection_open(gate: EgressGate, model_port: int) -> None:
    code = "import os, sys; print(os.environ['HTTP_PROXY'], flush=True); sys.stdin.readline(); sys.exit(3)"
    proc = run_relay(gate, code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as tunnel:
        tunnel.sendall(f"CONNECT 127.0.0.1:{model_port} HTTP/1.1\r\n\r\n".encode())
        assert status(read_head(tunnel)) == 200
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=5) == 3


def test_the_relay_passes_signals_on_and_reports_a_signal_death_as_128_plus_n(gate: EgressGate) -> None:
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = run_relay(gate, code, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # the relay itself killed would be -15
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    killed = run_relay(gate, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.wait(timeout=10) == 128 + signal.SIGKILL


def test_the_relay_fails_clearly_without_its_socket_or_its_command(gate: EgressGate, tmp_path: Path) -> None:
    no_socket = [*relay_argv(sys.executable, RELAY_SCRIPT, tmp_path / "none.sock", 0), "true"]
    proc = subprocess.run(no_socket, capture_output=True, text=True, timeout=30)
    assert proc.returncode == relay.RELAY_FAILED and "fleet relay:" in proc.stderr
    no_command = [*relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), "/no/such/agent-cli"]
    assert subprocess.run(no_command, capture_output=True, timeout=30).returncode == 127


# Runs inside bubblewrap's network namespace, behind the relay: what the agent's own code would try.
PROBE = r"""
import json, os, socket, sys, urllib.error, urllib.request
model, redis = sys.argv[1:]
result = {"proxy": os.environ["HTTPS_PROXY"], "no_proxy": os.environ.get("NO_PROXY")}
result["model"] = urllib.request.urlopen(f"http://127.0.0.1:{model}/inside", timeout=10).read().decode()
try:
    urllib.request.urlopen(f"http://127.0.0.1:{redis}/", timeout=10)
except urllib.error.HTTPError as error:
    result["redis_via_proxy"] = error.code


def direct(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    except OSError as error:
        return type(error).__name__
    return "connected"


result["redis_direct"], result["model_direct"] = direct(redis), direct(model)
with socket.create_connection(("127.0.0.1", int(result["proxy"].rsplit(":", 1)[1])), timeout=10) as tunnel:
    tunnel.sendall(f"CONNECT 127.0.0.1:{model} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += tunnel.recv(1)
    tunnel.sendall(b"GET /tunnelled HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := tunnel.recv(65536):
        answer += chunk
    result["tunnel"] = answer.decode().rsplit("\r\n", 1)[-1]
print(json.dumps(result))
"""


def test_inside_bubblewrap_only_the_allowed_server_is_reachable(
    gate: EgressGate, socket_dir: Path, model_port: int, redis: Listener
) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if IN_CI:
            pytest.fail("bubblewrap is required under CI=true")
        pytest.skip("bubblewrap is not installed")
    sandbox = [bwrap, "--unshare-user", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    sandbox += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--bind", str(socket_dir), str(socket_dir)]
    command = [sys.executable, "-I", "-c", PROBE, str(model_port), str(redis.port)]
    argv = [*sandbox, *relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), *command]
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == "model says hi to /inside" and result["tunnel"] == "model says hi to /tunnelled"
    assert result["redis_via_proxy"] == 403 and result["no_proxy"] is None
    assert result["redis_direct"] == result["model_direct"] == "ConnectionRefusedError"  # a loopback of its own
    assert not redis.contacted()
    assert f"[fleet] egress denied: 127.0.0.1:{redis.port} (not on the allow-list)" in [e.line() for e in gate.events]
