"""The in-sandbox relay in front of an egress gate, on real sockets and, last, inside bubblewrap's network namespace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workers.conftest import Listener, read_head, status
from workers import relay
from workers.egress import RELAY_SCRIPT, EgressGate, relay_argv

IN_CI = os.environ.get("CI", "").lower() == "true"


def test_relay_argv_is_a_prefix_for_the_command() -> None:
    argv = relay_argv("/usr/bin/python3", RELAY_SCRIPT, Path("/run/egress/egress.sock"), 0)
    assert argv == ("/usr/bin/python3", "-I", "-S", str(RELAY_SCRIPT), "/run/egress/egress.sock", "0", "--")


def run_relay(gate: EgressGate, code: str, **kwargs: Any) -> subprocess.Popen[str]:
    """The relay script in front of gate, running `python -c code`."""
    argv = [*relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), sys.executable, "-c", code]
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*", "HTTP_PROXY": "http://elsewhere:1"}
    return subprocess.Popen(argv, env=env, text=True, **kwargs)


def test_the_relay_sets_the_proxy_variables_and_exits_with_the_commands_status(gate: EgressGate) -> None:
    code = "import json, os; print(json.dumps(dict(os.environ))); raise SystemExit(7)"
    proc = run_relay(gate, code, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    env = json.loads(out)
    assert proc.returncode == 7
    proxies = {env[name] for name in relay.PROXY_VARIABLES}
    assert len(proxies) == 1 and proxies.pop().startswith("http://127.0.0.1:")
    assert "NO_PROXY" not in env and "no_proxy" not in env


def test_the_relay_exits_when_its_command_does_even_with_a_connection_open(gate: EgressGate, model_port: int) -> None:
    code = "import os, sys; print(os.environ['HTTP_PROXY'], flush=True); sys.stdin.readline(); sys.exit(3)"
    proc = run_relay(gate, code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as tunnel:
        tunnel.sendall(f"CONNECT 127.0.0.1:{model_port} HTTP/1.1\r\n\r\n".encode())
        assert status(read_head(tunnel)) == 200
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=5) == 3


def test_the_relay_passes_signals_on_and_reports_a_signal_death_as_128_plus_n(gate: EgressGate) -> None:
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = run_relay(gate, code, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # the relay itself killed would be -15
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    killed = run_relay(gate, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.wait(timeout=10) == 128 + signal.SIGKILL


def test_the_relay_fails_clearly_without_its_socket_or_its_command(gate: EgressGate, tmp_path: Path) -> None:
    no_socket = [*relay_argv(sys.executable, RELAY_SCRIPT, tmp_path / "none.sock", 0), "true"]
    proc = subprocess.run(no_socket, capture_output=True, text=True, timeout=30)
    assert proc.returncode == relay.RELAY_FAILED and "fleet relay:" in proc.stderr
    no_command = [*relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), "/no/such/agent-cli"]
    assert subprocess.run(no_command, capture_output=True, timeout=30).returncode == 127


# Runs inside bubblewrap's network namespace, behind the relay: what the agent's own code would try.
PROBE = r"""
import json, os, socket, sys, urllib.error, urllib.request
model, redis = sys.argv[1:]
result = {"proxy": os.environ["HTTPS_PROXY"], "no_proxy": os.environ.get("NO_PROXY")}
result["model"] = urllib.request.urlopen(f"http://127.0.0.1:{model}/inside", timeout=10).read().decode()
try:
    urllib.request.urlopen(f"http://127.0.0.1:{redis}/", timeout=10)
except urllib.error.HTTPError as error:
    result["redis_via_proxy"] = error.code


def direct(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    except OSError as error:
        return type(error).__name__
    return "connected"


result["redis_direct"], result["model_direct"] = direct(redis), direct(model)
with socket.create_connection(("127.0.0.1", int(result["proxy"].rsplit(":", 1)[1])), timeout=10) as tunnel:
    tunnel.sendall(f"CONNECT 127.0.0.1:{model} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += tunnel.recv(1)
    tunnel.sendall(b"GET /tunnelled HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := tunnel.recv(65536):
        answer += chunk
    result["tunnel"] = answer.decode().rsplit("\r\n", 1)[-1]
print(json.dumps(result))
"""


def test_inside_bubblewrap_only_the_allowed_server_is_reachable(
    gate: EgressGate, socket_dir: Path, model_port: int, redis: Listener
) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if IN_CI:
            pytest.fail("bubblewrap is required under CI=true")
        pytest.skip("bubblewrap is not installed")
    sandbox = [bwrap, "--unshare-user", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    sandbox += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--bind", str(socket_dir), str(socket_dir)]
    command = [sys.executable, "-I", "-c", PROBE, str(model_port), str(redis.port)]
    argv = [*sandbox, *relay_argv(sys.executable, RELAY_SCRIPT, gate.socket_path, 0), *command]
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == "model says hi to /inside" and result["tunnel"] == "model says hi to /tunnelled"
    assert result["redis_via_proxy"] == 403 and result["no_proxy"] is None
    assert result["redis_direct"] == result["model_direct"] == "ConnectionRefusedError"  # a loopback of its own
    assert not redis.contacted()
    assert f"[fleet] egress denied: 127.0.0.1:{redis.port} (not on the allow-list)" in [e.line() for e in gate.events]
