"""The escape suite, end to end: probe agents and probe test suites through a whole Fleet, as the worker runs.

Each probe tries to reach what a worker's machine holds (the worker's home and credentials, FLEET_HOME and
its database, another registered repository's unmerged branch, the worker's secret variables, Redis and
PostgreSQL, a Unix socket) and to get it out through the only channels it has: the agent's transcript, and
the test output that becomes `fleet logs` and the next attempt's feedback. The tests assert that nothing
came out and that the honest ticket beside the probes still passes.
"""

from __future__ import annotations

import shlex
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from system.git import git
from system.sandbox import bwrap_missing
from tests.core.conftest import Fleet, scripted
from tests.security.probes import REACH
from workers.agents.scripted import BUGGY_ADD, SAMPLE_TEST_CMD, write_sample_repo

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

ADD = "tests/test_calc.py::test_add"
SECRET_VARIABLES = ("DB_PASS", "STRIPE_SK", "SERVICE_DSN", "PLAIN_LOOKING_NAME")
# What a probe does, in Python; {paths} and {ports} are filled in. It prints every result on one line.
LOOT = (
    REACH
    + """
import os, pathlib, socket, subprocess

def _read(path):
    try:
        return pathlib.Path(path).read_text()[:200]
    except OSError as exc:
        return type(exc).__name__

def _git_log(repo):
    done = subprocess.run(["git", "-C", repo, "log", "--all", "--format=%s"], capture_output=True, text=True)
    return done.stdout + done.stderr

def loot():
    found = [_read(p) for p in {paths}]
    found += [_git_log(r) for r in {repos}]
    found += [reach(socket.AF_INET, ("127.0.0.1", port)) for port in {ports}]
    found += [reach(socket.AF_UNIX, path) for path in {sockets}]
    found += ["%s=%s" % item for item in sorted(os.environ.items())]
    found += [line for line in open("/proc/self/status").read().splitlines() if line.startswith("CapEff")]
    return " | ".join(found)
"""
)
AGENT = """#!{python}
{loot}
print("LOOT", loot(), flush=True)
calc = pathlib.Path("calc.py")
calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
"""
TEST_PROBE = """#!{python}
import pathlib
probe = '''{loot}
def add(a, b):
    raise AssertionError(loot())
'''
calc = pathlib.Path("calc.py")
calc.write_text(calc.read_text().replace("def add(a, b):\\n    return a - b\\n", probe))
"""


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TCP port standing in for the web app, and a Unix socket standing in for a terminal multiplexer's."""
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        tcp.bind(("127.0.0.1", 0))
        unix.bind(str(tmp_path / "tmux-0"))
        tcp.listen(8)
        unix.listen(8)
        yield tcp.getsockname()[1], tmp_path / "tmux-0"


def _write_program(fleet: Fleet, name: str, template: str, loot: str) -> Path:
    path = fleet.tmp / name
    path.write_text(template.replace("{python}", sys.executable).replace("{loot}", loot))
    path.chmod(0o755)
    return path


def _host_with_secrets(fleet: Fleet, canary: str) -> tuple[list[Path], Path]:
    """A worker home with credentials, a database, another registered repository with an unmerged branch."""
    home = fleet.tmp / "worker-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{canary}\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"aws_secret_access_key = {canary}\n")
    (home / "notes.txt").write_text(canary)
    fleet.env["HOME"] = str(home)
    for name in SECRET_VARIABLES:
        fleet.env[name] = f"{name.lower()}-{canary}"
    other = fleet.sample_repo("other")
    git("checkout", "-qb", "unmerged", cwd=other)
    git("commit", "-q", "--allow-empty", "-m", f"unmerged {canary}", cwd=other)
    git("checkout", "-q", "main", cwd=other)
    files = [home / ".ssh" / "id_rsa", home / ".aws" / "credentials", home / "notes.txt", fleet.home / "fleet.db"]
    return files, other


def _loot(files: list[Path], repos: list[Path], ports: list[int], sockets: list[Path]) -> str:
    text = LOOT.replace("{paths}", repr([str(f) for f in files])).replace("{repos}", repr([str(r) for r in repos]))
    return text.replace("{ports}", repr(ports)).replace("{sockets}", repr([str(s) for s in sockets]))


def _logs(fleet: Fleet, ticket_id: int) -> str:
    attempts = [a for run in fleet.json("show", str(ticket_id))["runs"] for a in run["attempts"]]
    return "\n".join(fleet.run("logs", str(a["id"])).stdout for a in attempts)


def test_probe_agents_and_probe_tests_get_nothing_out_and_the_honest_ticket_passes(
    embedded: Fleet, listeners: tuple[int, Path]
) -> None:
    fleet = embedded
    canary = f"canary{uuid.uuid4().hex}"
    web_port, tmux = listeners
    fleet.sample_repo()
    files, other = _host_with_secrets(fleet, canary)
    pg_socket = Path("/var/run/postgresql/.s.PGSQL.5432")
    loot = _loot(files, [other, fleet.tmp / "calc"], [6379, 5432, web_port], [pg_socket, tmux])
    agent = _write_program(fleet, "probe-agent.py", AGENT, loot)
    tests = _write_program(fleet, "probe-tests.py", TEST_PROBE, loot)
    common = ("--repo", "calc", "--body", ADD, "--title")
    [probe_agent] = fleet.submit(*common, "agent", "--attempts", "1", "--agent-cmd", str(agent))
    [probe_tests] = fleet.submit(*common, "tests", "--attempts", "2", "--agent-cmd", str(tests))
    [honest] = fleet.submit(*common, "honest", "--agent-cmd", scripted("fix-add"))
    fleet.up(concurrency=3)

    shown = {name: fleet.json("show", str(t["id"])) for name, t in (("honest", honest), ("agent", probe_agent))}
    shown["tests"] = fleet.json("show", str(probe_tests["id"]))
    statuses = {name: view["status"] for name, view in shown.items()}
    assert statuses == {"honest": "needs_review", "agent": "needs_review", "tests": "failed"}, shown
    agent_logs, test_logs = _logs(fleet, probe_agent["id"]), _logs(fleet, probe_tests["id"])
    assert "LOOT" in agent_logs and "AssertionError" in test_logs  # both probes ran and reported
    for logs in (agent_logs, test_logs):
        assert canary not in logs
        assert "REACHED" not in logs
        assert "CapEff:\t0000000000000000" in logs and "CapEff:\t000001" not in logs
        assert not any(f"{name}=" in logs for name in SECRET_VARIABLES)
    with fleet.db().session() as s:
        from db.models import Attempt, Verification

        stored = [a.prompt + a.transcript for a in s.query(Attempt)] + [
            v.feedback + v.output for v in s.query(Verification)
        ]
    assert stored and not any(canary in text for text in stored)


def test_secret_values_in_test_output_are_redacted_even_when_a_repository_passes_the_variable(
    embedded: Fleet,
) -> None:
    fleet = embedded
    repo = fleet.tmp / "calc"
    write_sample_repo(repo)
    (repo / ".fleet.toml").write_text(f"test_cmd = {SAMPLE_TEST_CMD!r}\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    fleet.run("repo", "add", "calc", str(repo), "--test-env", "STRIPE_SK")  # the operator's, never a .fleet.toml's
    fleet.env["STRIPE_SK"] = "sk_live_" + uuid.uuid4().hex
    leak = "import os\ndef add(a, b):\n    raise AssertionError(os.environ.get('STRIPE_SK', 'absent'))\n"
    edit = f"p = pathlib.Path('calc.py'); p.write_text(p.read_text().replace({BUGGY_ADD!r}, {leak!r}))"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote('import pathlib; ' + edit)}"
    [ticket] = fleet.submit("--repo", "calc", "--title", "t", "--body", ADD, "--attempts", "1", "--agent-cmd", command)
    fleet.up()
    logs = _logs(fleet, ticket["id"])
    assert fleet.env["STRIPE_SK"] not in logs
    assert "[redacted]" in logs  # it reached the tests (the operator asked for it), and was redacted on the way out


EGRESS_PROBE = """#!{python}
import os, pathlib, socket, sys, urllib.request

model, web_port = sys.argv[1], int(sys.argv[2])
print("MODEL", urllib.request.urlopen(model, timeout=10).read().decode(), flush=True)
for url in ("http://127.0.0.1:6379/", "http://127.0.0.1:5432/", f"http://127.0.0.1:{web_port}/", "http://169.254.169.254/"):
    try:
        urllib.request.urlopen(url, timeout=10)
        print("REACHED", url, flush=True)
    except Exception as exc:
        print("REFUSED", url, getattr(exc, "code", type(exc).__name__), flush=True)
for port in (6379, 5432, web_port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        print("REACHED direct", port, flush=True)
    except OSError as exc:
        print("REFUSED direct", port, type(exc).__name__, flush=True)
calc = pathlib.Path("calc.py")
calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
"""


@pytest.fixture
def model_server() -> Iterator[str]:
    """A stand-in for a model API on 127.0.0.1: what an agent with the network is allowed to reach."""
    import http.server
    import threading

    class Model(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"model-says-hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_an_agent_with_the_network_reaches_its_model_and_nothing_else(
    embedded: Fleet, model_server: str, listeners: tuple[int, Path]
) -> None:
    fleet = embedded
    repo = fleet.tmp / "calc"
    write_sample_repo(repo)
    fleet.run("repo", "add", "calc", str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--agent-network", "on")
    fleet.env["PROBE_MODEL_BASE_URL"] = model_server  # passed to the agent: its host is allowed through the proxy
    probe = _write_program(fleet, "egress-probe.py", EGRESS_PROBE, "")
    command = shlex.join([str(probe), model_server, str(listeners[0])])
    options = ("--agent-cmd", command, "--agent-env", "PROBE_MODEL_BASE_URL", "--attempts", "1")
    [ticket] = fleet.submit("--repo", "calc", "--title", "t", "--body", ADD, *options)
    fleet.up()
    logs = _logs(fleet, ticket["id"])
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review", logs
    assert "MODEL model-says-hello" in logs
    assert "REACHED" not in logs and logs.count("REFUSED") == 7, logs
    assert "[fleet] egress denied: 127.0.0.1:6379" in logs  # the transcript says what was refused
    assert "[fleet] egress allowed: " + model_server.split("/")[2] in logs


# An agent that puts a folder where its egress socket was (the socket's folder is bound into its sandbox, writable),
# then fixes add().
GATE_REPLACED = """#!/bin/sh
gate=$(awk '$5 ~ /fleet-egress/ {{print $5}}' /proc/self/mountinfo | head -1)
rm -f "$gate/proxy.sock" && mkdir "$gate/proxy.sock" && echo "socket replaced"
exec {fix}
"""


def test_an_agent_that_replaces_its_egress_socket_ends_and_its_diff_is_verified(
    embedded: Fleet, model_server: str
) -> None:
    """Closing the gate raised on the folder: the attempt's model gate stayed open and `fleet up` never ended."""
    fleet = embedded
    repo = fleet.tmp / "calc"
    write_sample_repo(repo)
    fleet.run("repo", "add", "calc", str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--agent-network", "on")
    probe = fleet.tmp / "replace-gate.sh"
    probe.write_text(GATE_REPLACED.format(fix=scripted("fix-add")))
    probe.chmod(0o755)
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "t", "--body", ADD, "--agent-cmd", str(probe), "--attempts", "1"
    )
    fleet.up()
    logs = _logs(fleet, ticket["id"])
    assert "socket replaced" in logs
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review", logs
