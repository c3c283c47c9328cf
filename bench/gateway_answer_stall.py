"""How long a whole JSON answer of 30 MiB stalls the other gates of the worker's gateway.

    python bench/gateway_answer_stall.py [--shape text|objects]

A provider on loopback answers one gate's call with 30 MiB of JSON, whole (not streamed): one long text, or
log-probabilities (many small objects, the shape that is slowest to read). Meanwhile another gate's agent makes small
calls one after another; the slowest of them while the large answer is read is the stall every gate of the worker saw.
Prints that, and how long the large call took.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.upstream import model_upstream  # noqa: E402
from workers.gateway.handler import Call  # noqa: E402
from workers.gateway.protocols import Upstream  # noqa: E402
from workers.gateway.server import ModelGateway  # noqa: E402

MiB = 2**20
USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}


class NoMeter:
    def hold(self, model: str, request_bytes: int, output_tokens: int) -> float:
        return 0.0

    def refusal(self, model: str, held: float) -> str | None:
        return None

    def record(self, call: Call) -> None:
        pass


def large_answer(shape: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "word " * (30 * MiB // 5) if shape == "text" else "x"}
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    if shape == "objects":
        choice["logprobs"] = {"content": [{"token": "ab", "logprob": -0.1, "bytes": [97, 98]}] * (30 * MiB // 45)}
    return json.dumps(
        {"id": "x", "object": "chat.completion", "model": "m", "choices": [choice], "usage": USAGE}
    ).encode()


def large_provider(answer: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=("text", "objects"), default="objects")
    shape = parser.parse_args().shape
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    provider = large_provider(large_answer(shape))
    gateway = ModelGateway()
    with model_upstream() as small_provider:
        large_url, small_url = f"http://127.0.0.1:{provider.server_address[1]}", small_provider.url
        big = gateway.open({"openai": Upstream(large_url, "k", "OPENAI_API_KEY")}, NoMeter())
        small = gateway.open({"openai": Upstream(small_url + "/v1", "sk-real-upstream-key-0123456789", "K")}, NoMeter())
        done, took = threading.Event(), [0.0]

        def large_call() -> None:
            started = time.perf_counter()
            with httpx.Client(trust_env=False, timeout=300) as client:
                client.post(
                    f"{big.url}/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {big.key}"}
                )
            took[0] = time.perf_counter() - started
            done.set()

        worst = 0.0
        with httpx.Client(trust_env=False, timeout=300) as client:
            threading.Thread(target=large_call).start()
            while not done.is_set():
                started = time.perf_counter()
                client.post(
                    f"{small.url}/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {small.key}"}
                )
                worst = max(worst, time.perf_counter() - started)
        print(
            f"{shape}: 30 MiB answer in {took[0] * 1000:.0f} ms;"
            f" slowest other gate's call meanwhile {worst * 1000:.0f} ms"
        )
        big.close()
        small.close()
    gateway.close()
    provider.shutdown()


if __name__ == "__main__":
    main()
