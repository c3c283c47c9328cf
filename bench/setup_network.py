"""What a setup's own network costs: the same setup run with the host's network, with none, and through the
egress proxy (the default), side by side.

    python bench/setup_network.py [--rounds 20]

Each round runs, in turn, two setups in a sandboxed checkout through `set_up_environment` (what a worker runs):
- quiet:  `true`, which opens no connection: the cost of the gate and the in-sandbox relay alone;
- fetch:  a Python script that downloads 1 MiB from a server on this host's loopback, listed in the gate's
          allow-list (through the proxy) or reached directly (the host's network).
Prints the median wall time of each (setup, network) pair and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from system.git import git  # noqa: E402
from system.sandbox import bwrap_missing, toolchain_roots  # noqa: E402
from verification.environment import SetupEgress, SetupRoute, SetupSandbox, set_up_environment  # noqa: E402
from workers.egress import RELAY_SCRIPT, EgressProxy, relay_argv  # noqa: E402
from workers.egress_rules import SETUP_SETTING  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BODY = b"x" * 2**20
FETCH = "import sys, urllib.request; assert len(urllib.request.urlopen(sys.argv[1], timeout=30).read()) == 2**20"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


def gate_opener(proxy: EgressProxy, folder: Path, allow: list[str]) -> SetupEgress:
    @contextmanager
    def route() -> Iterator[SetupRoute]:
        socket = folder / "gate" / "proxy.sock"
        with proxy.open(socket, allow, setting=SETUP_SETTING) as gate:
            relay = relay_argv(sys.executable, RELAY_SCRIPT, socket, 0)
            yield SetupRoute(socket, relay, lambda: [event.line() for event in gate.events], list)

    return route


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if (missing := bwrap_missing()) is not None:
        sys.exit(f"the setup sandbox needs bubblewrap: {missing}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    commands = {"quiet": "true", "fetch": shlex.join([sys.executable, "-c", FETCH, f"http://{address}/wheel"])}
    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-setup-") as tmp, EgressProxy() as proxy:
        root = Path(tmp)
        checkout = root / "checkout"
        git("init", "-q", str(checkout), cwd=root)
        readable = toolchain_roots(str(Path(sys.executable).parent), [commands["fetch"]])
        sandboxes = {
            "host": SetupSandbox(root / "scratch", readable, (), "host"),
            "none": SetupSandbox(root / "scratch", readable, (), "none"),
            "proxy": SetupSandbox(root / "scratch", readable, (), "proxy", gate_opener(proxy, root, [address])),
        }
        for _ in range(args.rounds):
            for setup, command in commands.items():
                for network, sandbox in sandboxes.items():
                    if setup == "fetch" and network == "none":
                        continue
                    started = time.perf_counter()
                    set_up_environment(
                        checkout, command, where="bench", timeout=60, env={"PATH": "/usr/bin:/bin"}, sandbox=sandbox
                    )
                    timings.setdefault(f"{setup}, {network}", []).append(time.perf_counter() - started)
    server.shutdown()
    medians = {name: round(1000 * statistics.median(values), 1) for name, values in timings.items()}
    for name, ms in medians.items():
        print(f"{name:14} {ms:8.1f} ms (median of {args.rounds})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"setup_network-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    machine = {"python": platform.python_version(), "platform": platform.platform()}
    out.write_text(json.dumps({"rounds": args.rounds, "median_ms": medians, "machine": machine}, indent=2))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
