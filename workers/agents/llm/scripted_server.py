"""A scripted OpenAI-compatible model server on loopback, for tests and `fleet demo`; the model is a script, not an AI.

    python -m workers.agents.llm.scripted_server --script fix-add --port 0   # prints its URL, serves until killed

It speaks every protocol the agent CLIs use (scripted_routes.py): OpenAI chat completions and Responses, Anthropic
Messages and Gemini, JSON and SSE, with tool calls; real CLIs are driven with their own tools (cli_scripts.py), and
every answer's usage is billed to a ledger (`--bill-log FILE` writes it as JSON lines). `--api-key K` answers 401
to any other key. For Fleet's own llm agent (plain chat, bash blocks), which script answers: the
request's `model` when it names a script, else a `[script:NAME]` marker in the conversation's first user message
(the ticket), else the server's default. Scripts are stateless: each reply depends only on the conversation so far,
so retries, fan-out and many tickets at once just work. They are written for the sample repository of
workers.agents.scripted.write_sample_repo (bugs in calc.py add, mul and div):

    fix-add          reads calc.py, fixes add(), says FLEET_DONE.
    needs-feedback   a wrong mul() fix (`a * b - 1`) until the ticket carries Fleet's feedback
                     ("## Feedback on your previous attempt"), then the right one.
    game-tests       "fixes" test_add by editing tests/test_calc.py, which Fleet must catch.
    never-finish     runs `ls` forever (for the step limit).
    chatty           never sends a command block (for format errors and the step limit).
    garbage          answers 200 with a body that is not JSON.
    error-500        answers HTTP 500 every time (for retries).
    slow             waits --delay seconds before each answer (for the request time-out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from workers.agents.llm.scripted_routes import Answer, Setup, answer
from workers.agents.llm.scripts import NAMES, SCRIPTS, SPECIAL, Messages, completion, pick_script
from workers.agents.llm.wire import Bill, Ledger

__all__ = ["NAMES", "SCRIPTS", "SPECIAL", "Bill", "ScriptedModelServer", "completion", "main", "pick_script"]


def fixed_calc() -> str:
    """The sample repository's calc.py with add() fixed (aider's whole-file answer)."""
    from workers.agents.scripted import SAMPLE_CALC

    return SAMPLE_CALC.replace("return a - b", "return a + b")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._reply(answer(self.server.setup, "GET", self.path, self._headers(), b""))

    def do_HEAD(self) -> None:
        self._reply(answer(self.server.setup, "HEAD", self.path, self._headers(), b""), body=False)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.record(raw)
        self._reply(answer(self.server.setup, "POST", self.path, self._headers(), raw))

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _reply(self, found: Answer, body: bool = True) -> None:
        try:
            self.send_response(found.status)
            self.send_header("Content-Type", found.content_type)
            for name, value in found.headers:
                self.send_header(name, value)
            if isinstance(found.body, bytes):
                self.send_header("Content-Length", str(len(found.body)))
                self.end_headers()
                if body:
                    self.wfile.write(found.body)
                return
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self._stream(found.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its time-out); nothing to tell it

    def _stream(self, chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo read the conversation from Fleet, not from this server's log


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, setup: Setup) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.setup = setup
        self.requests: list[tuple[str, Messages]] = []
        self.lock = threading.Lock()

    def record(self, raw: bytes) -> None:
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        if isinstance(request, dict) and isinstance(request.get("messages"), list):
            with self.lock:
                self.requests.append((str(request.get("model", "")), list(request["messages"])))


class ScriptedModelServer:
    """The server in a background thread: `with ScriptedModelServer("fix-add") as server: server.url`."""

    def __init__(
        self,
        script: str = "fix-add",
        port: int = 0,
        delay: float = 30.0,
        api_key: str | None = None,
        bill_log: Path | None = None,
    ) -> None:
        if script not in NAMES:
            raise ValueError(f"unknown script {script!r}; one of: {', '.join(NAMES)}")
        self.ledger = Ledger(bill_log)
        self._server = _Server(port, Setup(script, delay, api_key, self.ledger, fixed_calc()))
        self._thread = threading.Thread(target=self._serve, name="scripted-model", daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI-style base URL (ends in /v1), for FLEET_LLM_BASE_URL."""
        return f"{self.root}/v1"

    @property
    def root(self) -> str:
        """The server's root URL (Anthropic and Gemini clients add their own /v1 or /v1beta)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def requests(self) -> list[tuple[str, Messages]]:
        """Every chat (model, messages) received so far."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def bills(self) -> list[Bill]:
        """Every answer's billed usage so far."""
        with self.ledger.lock:
            return list(self.ledger.bills)

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # stop() returns within 50 ms

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until SIGINT or SIGTERM; the first line printed is the base URL."""
    parser = argparse.ArgumentParser(prog="python -m workers.agents.llm.scripted_server", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--script", default="fix-add", choices=NAMES, help="the llm agent's default script")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=30.0, help="seconds the slow script waits")
    parser.add_argument("--api-key", default=None, help="answer 401 to requests with any other key")
    parser.add_argument("--bill-log", type=Path, default=None, help="append each billed usage here (JSON lines)")
    args = parser.parse_args(argv)
    server = ScriptedModelServer(args.script, args.port, args.delay, args.api_key, args.bill_log)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    server.start()
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
