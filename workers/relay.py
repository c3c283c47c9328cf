"""Fleet's in-sandbox egress relay: the agent's HTTP proxy on 127.0.0.1, forwarding to the worker's egress socket.

Usage: python3 -I relay.py SOCKET PORT [--forward GATE_PORT]... -- COMMAND [ARG...]

It runs inside the sandbox's private network namespace, where the only way out is SOCKET, bind-mounted from the
worker's egress proxy (workers/egress.py, which decides what may pass). It listens on 127.0.0.1:PORT (0: a free
port), starts COMMAND with HTTP(S)_PROXY and ALL_PROXY (both cases) pointing there and NO_PROXY removed, forwards
every connection to SOCKET byte for byte, passes SIGTERM, SIGINT and SIGHUP on to COMMAND, and exits with COMMAND's
status (128+N when a signal N ended it) as soon as COMMAND exits, whatever connections are still open.

Each `--forward GATE_PORT` also listens on 127.0.0.1:GATE_PORT and tunnels every connection there through SOCKET
with `CONNECT 127.0.0.1:GATE_PORT`: the attempt's model gateway (workers/gateway/) listens at that port on the
worker's loopback and the egress allow-list names it, so an agent reaches its gateway at the same URL inside the
sandbox as outside, whether or not its HTTP client honours the proxy variables.

Stdlib only and self-contained: it runs isolated (-I) and must import nothing from Fleet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType

USAGE = "usage: relay.py SOCKET PORT [--forward GATE_PORT]... -- COMMAND [ARG...]"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
BYPASS_VARIABLES = ("NO_PROXY", "no_proxy")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
MAX_CONNECTIONS = 64  # more wait in the listen backlog until one ends
CHUNK_BYTES = 65_536
RELAY_FAILED = 125  # as env(1) and docker: the wrapper failed, not the command


def parse_args(argv: Sequence[str]) -> tuple[str, int, list[str], list[int]]:
    """SOCKET, PORT, the command and the forwarded ports from the arguments; ValueError when they do not fit."""
    argv, forwards = list(argv), []
    while len(argv) > 3 and argv[2] == "--forward" and _port(argv[3]):
        forwards.append(int(argv[3]))
        del argv[2:4]
    if len(argv) < 4 or argv[2] != "--" or not _port(argv[1]):
        raise ValueError(USAGE)
    return argv[0], int(argv[1]), list(argv[3:]), forwards


def _port(text: str) -> bool:
    return text.isdigit() and int(text) <= 65535


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0: a free port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    return listener


def child_env(environ: Mapping[str, str], port: int) -> dict[str, str]:
    """The command's environment: every proxy variable pointing at the relay, no bypass list."""
    env = {key: value for key, value in environ.items() if key not in BYPASS_VARIABLES}
    env.update(dict.fromkeys(PROXY_VARIABLES, f"http://127.0.0.1:{port}"))
    return env


def serve(listener: socket.socket, socket_path: str, tunnel_to: int = 0) -> None:
    """Accept connections for ever (until the listener is closed), each forwarded on a thread of its own."""
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while listener.fileno() != -1:
        slots.acquire()
        try:
            client, _ = listener.accept()
        except OSError:
            slots.release()
            time.sleep(0.05)  # out of file descriptors, or an aborted connection: try again
            continue
        with contextlib.suppress(OSError):  # each chunk passed on at once, not held for a delayed ACK (Nagle)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=forward, args=(client, socket_path, slots, tunnel_to), daemon=True).start()


def forward(client: socket.socket, socket_path: str, slots: threading.BoundedSemaphore, tunnel_to: int = 0) -> None:
    """Connect the client to the egress socket (through a CONNECT tunnel to 127.0.0.1:tunnel_to, when given) and
    copy both ways until both ways have ended."""
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(socket_path)
        if tunnel_to:
            open_tunnel(upstream, tunnel_to)
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
    except OSError:
        pass  # the egress socket is gone (the attempt is ending): the client sees the connection close
    finally:
        client.close()
        upstream.close()
        slots.release()


def open_tunnel(upstream: socket.socket, port: int) -> None:
    """Ask the egress proxy for a tunnel to 127.0.0.1:port; OSError unless it answers 200."""
    upstream.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = upstream.recv(1)  # byte by byte: what follows the head is the tunnel's, not ours to read
        if not data or len(head) > 8192:
            raise OSError("the egress proxy closed the tunnel")
        head += data
    if head.split(b" ", 2)[1:2] != [b"200"]:
        raise OSError(f"the egress proxy refused the tunnel: {head.splitlines()[0]!r}")


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy source to sink until end of file, then pass the end on.

    When sink breaks, read on and drop the rest instead of cutting the connection: the answer may still be on its
    way back (the proxy's 403 comes before the request's body), and a client stuck sending never reads it.
    """
    try:
        while data := source.recv(CHUNK_BYTES):
            sink.sendall(data)
    except OSError:
        discard(source)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def discard(source: socket.socket) -> None:
    """Read source to its end and drop it (nothing, if reading is what failed)."""
    with contextlib.suppress(OSError):
        while source.recv(CHUNK_BYTES):
            pass


class SignalForwarder:
    """Passes the signals the relay receives on to the command; those before it started, once it has."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signum)

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        """From now on signals go to child, starting with any that came before it."""
        self.child = child
        for signum in self.pending:
            self(signum, None)


def exit_status(returncode: int) -> int:
    """A shell's status for a child's return code: 128+N when signal N ended it."""
    return returncode if returncode >= 0 else 128 - returncode


def start(command: Sequence[str], port: int, forwarder: SignalForwarder) -> subprocess.Popen[bytes]:
    """Start the command with the relay's proxy variables, on the relay's stdin, stdout and stderr."""
    child = subprocess.Popen(list(command), env=child_env(os.environ, port))
    forwarder.attach(child)
    return child


def run(argv: Sequence[str]) -> int:
    """Relay while the command runs; the command's exit status (127/126: not found/not runnable; 125: no relay)."""
    try:
        socket_path, port, command, forwards = parse_args(argv)
        if not stat.S_ISSOCK(os.stat(socket_path).st_mode):
            raise ValueError(f"{socket_path} is not a socket")
        listener = listen(port)
        tunnels = [(listen(gate_port), gate_port) for gate_port in forwards]
    except (OSError, ValueError) as error:
        print(f"fleet relay: {error}", file=sys.stderr)
        return RELAY_FAILED
    threading.Thread(target=serve, args=(listener, socket_path), daemon=True).start()
    for tunnel, gate_port in tunnels:
        threading.Thread(target=serve, args=(tunnel, socket_path, gate_port), daemon=True).start()
    forwarder = SignalForwarder()
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forwarder)
    try:
        child = start(command, listener.getsockname()[1], forwarder)
    except OSError as error:
        print(f"fleet relay: cannot run {command[0]}: {error}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    return exit_status(child.wait())


def main() -> None:
    """Run, then leave at once: open connections and their threads end with the process."""
    status = run(sys.argv[1:])
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
