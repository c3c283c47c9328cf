"""A setup command's network: a private one, whose only way out is the egress proxy to the repository's
setup_hosts, unless the repository chooses the host's (`setup_network = host`). What a setup runs may be a
diff's code, and the host's loopback holds Fleet's own database, broker and web app."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator

import pytest

from system.git import git
from system.sandbox import bwrap_missing
from tests.core.conftest import Fleet, scripted
from tests.core.setup_server import SetupServer, setup_server
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap is not usable here")

THROUGH_PROXY = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30).read()"
DIRECT = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30).sendall(b'x')"
# A diff's build script, run by the verification's setup once the diff changed a key file: it tries the host's
# server every way it can and goes on quietly, as an attacker's would.
PROBING_SETUP = """import socket, sys, urllib.request
port, path = int(sys.argv[1]), f'/escaped-{sys.argv[2]}'
request = f'GET {path} HTTP/1.0\\r\\n\\r\\n'.encode()
for reach in (
    lambda: urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=10).read(),
    lambda: socket.create_connection(('127.0.0.1', port), timeout=10).sendall(request),
):
    try:
        reach()
    except OSError:
        pass
"""


@pytest.fixture
def server() -> Iterator[SetupServer]:
    with setup_server() as running:
        yield running


def python(code: str, *args: str) -> str:
    return shlex.join([sys.executable, "-c", code, *args])


def add_repo(fleet: Fleet, name: str, setup: str, *options: str) -> None:
    repo = fleet.tmp / name
    write_sample_repo(repo)
    fleet.run("repo", "add", name, str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--setup-cmd", setup, *options)


def fix_add(fleet: Fleet, repo: str) -> int:
    [ticket] = fleet.submit(
        "--repo", repo, "--title", "add", "--body", "tests/test_calc.py::test_add", "--agent-cmd", scripted("fix-add")
    )
    return int(ticket["id"])


def test_a_setup_reaches_its_setup_hosts_through_the_proxy_and_nothing_else(
    embedded: Fleet, server: SetupServer
) -> None:
    fleet = embedded
    add_repo(fleet, "listed", python(THROUGH_PROXY, f"http://{server.address}/listed"), "--setup-host", server.address)
    add_repo(fleet, "unlisted", python(THROUGH_PROXY, f"http://{server.address}/unlisted"))
    add_repo(fleet, "direct", python(DIRECT, str(server.port)))
    add_repo(fleet, "host", python(DIRECT, str(server.port)), "--setup-network", "host")
    tickets = {name: fix_add(fleet, name) for name in ("listed", "unlisted", "direct", "host")}
    fleet.up()
    shown = {name: fleet.json("show", str(ticket_id)) for name, ticket_id in tickets.items()}

    assert shown["listed"]["status"] == "needs_review", shown["listed"]
    assert server.count("/listed") >= 2  # the agent's worktree, then the verification's checkout
    [review] = fleet.json("review", "show", str(tickets["listed"]))["candidates"]
    assert f"egress allowed: {server.address}" in review["transcript"]

    assert shown["unlisted"]["status"] == "error" and server.count("/unlisted") == 0
    assert "setup in the agent's worktree failed" in shown["unlisted"]["reason"]
    assert f"egress denied: {server.address} (to allow it, add it to setup_hosts)" in shown["unlisted"]["reason"]

    assert shown["direct"]["status"] == "error", shown["direct"]  # its own loopback holds nothing
    assert shown["host"]["status"] == "needs_review", shown["host"]  # the host's network, chosen
    assert len(server.paths) == server.count("/listed")  # the direct connections sent no request


def test_a_diffs_build_script_cannot_reach_the_hosts_servers(embedded: Fleet, server: SetupServer) -> None:
    """The agent rewrites the setup's script and bumps a key file, so the verification builds a fresh environment
    with the diff's code: through the proxy it reaches nothing of the host; with the host's network it does."""
    fleet = embedded
    for name, options in (("guarded", ()), ("open", ("--setup-network", "host"))):
        repo = fleet.tmp / name
        write_sample_repo(repo)
        (repo / "build_env.py").write_text("print('environment built')\n")
        (repo / "requirements.txt").write_text("fleetdep==1\n")
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "a build script and its pin", cwd=repo)
        setup = f"{shlex.quote(sys.executable)} build_env.py {server.port} {name}"
        fleet.run("repo", "add", name, str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--setup-cmd", setup, *options)
    rewrite = f"cat > build_env.py <<'EOF'\n{PROBING_SETUP}EOF\necho fleetdep==2 > requirements.txt"
    tickets = {}
    for name in ("guarded", "open"):
        [ticket] = fleet.submit(
            "--repo", name, "--title", "bump", "--agent-cmd", f"sh -c {shlex.quote(rewrite)}", "--attempts", "1"
        )
        tickets[name] = int(ticket["id"])
    fleet.up()
    for name in ("guarded", "open"):
        [attempt] = fleet.json("show", str(tickets[name]))["runs"][0]["attempts"]
        assert attempt["verification"] is not None, attempt  # the diff was verified: its build script ran
    assert server.count("/escaped-open") >= 1  # the host's network, chosen: the script reached the server
    assert server.count("/escaped-guarded") == 0
