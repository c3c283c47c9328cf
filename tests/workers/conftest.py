"""Shared fixtures for the worker tests: a real sample repository, its bare mirror and a pool."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from system.git import git
from system.mirror import ensure_mirror
from workers import relay
from workers.agents.scripted import write_sample_repo
from workers.egress import EgressGate, EgressProxy
from workers.worktree import WorktreePool


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The demo repository, standing in for the user's registered repository."""
    repo = tmp_path / "source"
    write_sample_repo(repo)
    return repo


@pytest.fixture
def base_sha(source: Path) -> str:
    """The commit every test starts from."""
    return git("rev-parse", "HEAD", cwd=source).strip()


@pytest.fixture
def mirror(tmp_path: Path, source: Path, base_sha: str) -> Path:
    """The worker host's bare mirror of source."""
    return ensure_mirror(tmp_path / "mirrors", "repo-1", str(source), base_sha)


@pytest.fixture
def pool(tmp_path: Path, mirror: Path) -> WorktreePool:
    """A two-slot pool that gives up quickly."""
    return WorktreePool(tmp_path / "worktrees" / "repo-1" / "default", mirror, size=2, wait_seconds=0.5)


# --- the egress proxy's fixtures: a model endpoint, a Redis stand-in, a gate in front of them ---


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


def read_head(sock: socket.socket) -> bytes:
    """A response's header block, byte by byte so that nothing after it is consumed."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed after {head!r}"
        head += byte
    return head


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])
