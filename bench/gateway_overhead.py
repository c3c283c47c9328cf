"""The model gateway's overhead per call: a chat completion straight to a provider vs through an attempt's gate.

    python bench/gateway_overhead.py [--calls 200]

The provider is the gateway tests' canned one (tests/gateway/upstream.py) on loopback, answering at once, so the
difference is all the gateway's: the key check and swap, the upstream request, reading the usage (JSON or each
streamed event) and handing the call to the meter (here one that keeps nothing, so the database is not measured).
One keep-alive client, as agents' SDKs use. Prints milliseconds per call, median of the runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.conftest import routes  # noqa: E402
from tests.gateway.upstream import GOOD_KEY, model_upstream  # noqa: E402
from workers.gateway.handler import Call  # noqa: E402
from workers.gateway.server import ModelGateway  # noqa: E402

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]}


class NoMeter:
    def hold(self, model: str, request_bytes: int, output_tokens: int) -> float:
        return 0.0

    def admit(self, model: str, usd: float) -> str | None:
        return None

    def record(self, call: Call) -> None:
        pass

    def open(self) -> None:
        pass

    def release(self) -> None:
        pass


def per_call(url: str, key: str, stream: bool, calls: int) -> float:
    """Median milliseconds of `calls` chat completions on one keep-alive connection."""
    timings = []
    with httpx.Client(trust_env=False) as client:
        for _ in range(calls + 1):
            started = time.perf_counter()
            answer = client.post(
                f"{url}/chat/completions", json=BODY | {"stream": stream}, headers={"Authorization": f"Bearer {key}"}
            )
            answer.raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[1:])  # the first opens the connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls
    gateway = ModelGateway()
    with model_upstream() as provider, gateway.open(routes(provider), NoMeter()) as gate:
        for stream in (False, True):
            direct = per_call(provider.url + "/v1", GOOD_KEY, stream, calls)
            gated = per_call(gate.url + "/openai", gate.key, stream, calls)
            kind = "SSE " if stream else "JSON"
            print(f"{kind}  direct {direct:6.2f} ms  gateway {gated:6.2f} ms  overhead {gated - direct:6.2f} ms")
    gateway.close()


if __name__ == "__main__":
    main()
