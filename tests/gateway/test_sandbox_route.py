"""A sandboxed agent reaches its gate at the same URL as outside: the relay tunnels the gate's port through the
attempt's egress socket, whose allow-list names it, whether or not the agent's HTTP client uses the proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import queries
from tests.gateway.conftest import Attempt
from tests.gateway.upstream import BILLED, GOOD_KEY
from workers.egress import RELAY_SCRIPT, EgressProxy, relay_argv
from workers.gateway.attempt import agent_variables
from workers.gateway.server import GatewayGate

IN_CI = os.environ.get("CI", "").lower() == "true"
# The agent: one chat completion with what its environment gives it, directly and then through the proxy variables.
AGENT = """
import json, os, urllib.request
body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
def ask(opener):
    request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", body, method="POST")
    request.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
    request.add_header("Content-Type", "application/json")
    with opener.open(request, timeout=30) as answer:
        return json.load(answer)["usage"]["prompt_tokens"]
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
proxied = urllib.request.build_opener(urllib.request.ProxyHandler({"http": os.environ["HTTP_PROXY"]}))
print(json.dumps({"direct": ask(direct), "proxied": ask(proxied), "env": dict(os.environ)}))
"""


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="fleet-gw-"))  # short: a Unix socket path has at most 107 bytes
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_inside_bubblewrap_the_agent_reaches_its_gate_with_its_placeholder_key(
    gate: GatewayGate, attempt: Attempt, socket_dir: Path
) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if IN_CI:
            pytest.fail("bubblewrap is required under CI=true")
        pytest.skip("bubblewrap is not installed")
    sandbox = [bwrap, "--unshare-user", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    sandbox += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--bind", str(socket_dir), str(socket_dir)]
    with EgressProxy() as proxy, proxy.open(socket_dir / "egress.sock", [f"127.0.0.1:{gate.port}"]) as egress:
        relay = relay_argv(sys.executable, RELAY_SCRIPT, egress.socket_path, 0, [gate.port])
        env = {"PATH": os.environ["PATH"], **agent_variables(gate.url, gate.key)}
        proc = subprocess.run(
            [*sandbox, *relay, sys.executable, "-I", "-c", AGENT], capture_output=True, text=True, timeout=60, env=env
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["direct"], result["proxied"]) == (BILLED["openai-chat"][0],) * 2
    assert result["env"]["OPENAI_API_KEY"] == gate.key and GOOD_KEY not in json.dumps(result["env"])
    with attempt.written().session() as s:
        assert [c.status for c in queries.model_calls(s, attempt.attempt_id)] == [200, 200]
    assert GOOD_KEY not in proc.stdout + proc.stderr
