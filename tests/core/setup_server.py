"""A server on the host's loopback that counts the requests a setup command makes, to see what its network
reaches: through the egress proxy when the repository lists it in `setup_hosts`, directly with the host's network."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SetupServer:
    """Answers every GET with 200 and counts them by path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, path: str | None = None) -> int:
        return sum(1 for seen in self.paths if path is None or seen.endswith(path))


@contextmanager
def setup_server() -> Iterator[SetupServer]:
    server = SetupServer()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
