"""A scripted OpenAI-compatible model server on loopback, for tests and `fleet demo`; the model is a script, not an AI.

    python -m workers.agents.llm.scripted_server --script fix-add --port 0   # prints its URL, serves until killed

It answers POST /v1/chat/completions like a real server (JSON body, choices, usage). Which script answers: the
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
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FEEDBACK_MARKER = "Feedback"
MARKER = re.compile(r"\[script:([\w-]+)\]")
DONE = "The change is made.\n\n```bash\necho FLEET_DONE\n```"
LOOK = "Let me read the code first.\n\n```bash\ncat calc.py\n```"

Messages = list[dict[str, Any]]


def _bash(text: str, command: str) -> str:
    return f"{text}\n\n```bash\n{command}\n```"


def _edit(path: str, expression: str) -> str:
    # -i.bak then rm: the same command works with GNU and BSD sed.
    return f"sed -i.bak -e '{expression}' {path} && rm {path}.bak && cat {path}"


def _turns(*replies: str) -> Callable[[Messages], str]:
    def script(messages: Messages) -> str:
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        return replies[min(turn, len(replies) - 1)]

    return script


RIGHT_MUL = _bash("mul() is a plain product.", _edit("calc.py", r"s/return a \* b [-+] 1/return a * b/"))
WRONG_MUL = _bash("mul() adds one; take it off.", _edit("calc.py", r"s/return a \* b + 1/return a * b - 1/"))
FIX_ADD = _bash("add() subtracts; it must add.", _edit("calc.py", "s/return a - b/return a + b/"))


def _needs_feedback(messages: Messages) -> str:
    fix = RIGHT_MUL if FEEDBACK_MARKER in _first_user(messages) else WRONG_MUL
    return _turns(LOOK, fix, DONE)(messages)


SCRIPTS: dict[str, Callable[[Messages], str]] = {
    "fix-add": _turns(LOOK, FIX_ADD, DONE),
    "needs-feedback": _needs_feedback,
    "game-tests": _turns(
        _bash(
            "The quickest way to make test_add pass is to change what it expects.",
            _edit("tests/test_calc.py", "s/assert add(2, 3) == 5/assert add(2, 3) == -1/"),
        ),
        DONE,
    ),
    "never-finish": _turns(_bash("Let me keep looking around.", "ls")),
    "chatty": _turns("I am thinking about the problem, without running anything."),
}
SPECIAL = ("garbage", "error-500", "slow")
NAMES = (*SCRIPTS, *SPECIAL)


def _first_user(messages: Messages) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")


def pick_script(model: str, messages: Messages, default: str) -> str:
    """The script that answers: named by the model, else by a [script:NAME] marker in the ticket, else the default."""
    if model in NAMES:
        return model
    marker = MARKER.search(_first_user(messages))
    return marker.group(1) if marker and marker.group(1) in NAMES else default


def completion(model: str, messages: Messages, content: str) -> dict[str, Any]:
    """A chat.completion body; usage counts about four characters per token, like the real thing roughly does."""
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    completion_tokens = len(content) // 4 + 1
    return {
        "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in NAMES]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            model, messages = str(request.get("model", "")), list(request["messages"])
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": {"message": f"bad request: {exc}"}})
            return
        self.server.record(model, messages)
        self._answer(model, messages, pick_script(model, messages, self.server.default))

    def _answer(self, model: str, messages: Messages, script: str) -> None:
        if script == "garbage":
            self._send_raw(200, b"<html><body>502 Bad Gateway, but with status 200</body></html>", "text/html")
        elif script == "error-500":
            self._send(500, {"error": {"message": "scripted internal error"}})
        elif script == "slow":
            time.sleep(self.server.delay)
            self._send(200, completion(model, messages, DONE))
        else:
            self._send(200, completion(model, messages, SCRIPTS[script](messages)))

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json")

    def _send_raw(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its time-out); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo read the conversation from Fleet, not from this server's log


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, default: str, delay: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.default = default
        self.delay = delay
        self.requests: list[tuple[str, Messages]] = []
        self.lock = threading.Lock()

    def record(self, model: str, messages: Messages) -> None:
        with self.lock:
            self.requests.append((model, messages))


class ScriptedModelServer:
    """The server in a background thread: `with ScriptedModelServer("fix-add") as server: server.url`."""

    def __init__(self, script: str = "fix-add", port: int = 0, delay: float = 30.0) -> None:
        if script not in NAMES:
            raise ValueError(f"unknown script {script!r}; one of: {', '.join(NAMES)}")
        self._server = _Server(port, script, delay)
        self._thread = threading.Thread(target=self._serve, name="scripted-model", daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI-style base URL (ends in /v1), for FLEET_LLM_BASE_URL."""
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def requests(self) -> list[tuple[str, Messages]]:
        """Every (model, messages) received so far."""
        with self._server.lock:
            return list(self._server.requests)

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
    """Serve one script on 127.0.0.1 until SIGINT or SIGTERM; the first line printed is the base URL."""
    parser = argparse.ArgumentParser(prog="python -m workers.agents.llm.scripted_server", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--script", default="fix-add", choices=NAMES, help="the default script")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=30.0, help="seconds the slow script waits")
    args = parser.parse_args(argv)
    server = ScriptedModelServer(args.script, args.port, args.delay)
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
