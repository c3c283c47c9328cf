"""A real git server on 127.0.0.1: `git http-backend` (part of git) behind a small HTTP server with Basic auth.

Request bodies may come chunked (git does so past http.postBuffer); they are read whole before the CGI runs.
Every request's Authorization header is kept, so tests can see what credentials git sent and how.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class GitServer:
    """Bare repositories under root, served at http://127.0.0.1:PORT/NAME.git to user:password only."""

    def __init__(self, root: Path, user: str = "fleet-bot", password: str = "git-token-0123456789") -> None:
        self.root, self.user, self.password = root, user, password
        self.url = ""
        self.seen_auth: list[str] = []

    def bare(self, name: str, source: Path) -> str:
        """A bare copy of the repository at source, served as NAME.git; returns its URL."""
        target = self.root / f"{name}.git"
        subprocess.run(["git", "clone", "--bare", "-q", str(source), str(target)], check=True)
        subprocess.run(["git", "config", "http.receivepack", "true"], cwd=target, check=True)
        return f"{self.url}/{name}.git"

    def _cgi(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        parts = urlsplit(path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.user,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
        }
        if headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        return proc.stdout

    def authorised(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    @contextmanager
    def serving(self) -> Iterator[GitServer]:
        self.root.mkdir(parents=True, exist_ok=True)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("content-length") or 0))
    chunks = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()
            return b"".join(chunks)
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            body = _read_body(self)
            auth = self.headers.get("authorization", "")
            server.seen_auth.append(auth)
            if not server.authorised(auth):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("content-length", "0")
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            out = server._cgi(self.command, self.path, headers, body)
            head, _, payload = out.partition(b"\r\n\r\n")
            status = 200
            fields = []
            for line in head.decode(errors="replace").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    fields.append((name, value.strip()))
            self.send_response(status)
            for name, value in fields:
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

    return Handler
