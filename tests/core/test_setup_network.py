"""A setup command runs a diff's code once the diff changes a key file: its network is a private one, whose only way
out is the egress proxy to the repository's setup_hosts, unless the repository chooses the host's (`setup_network =
host`), since the host's loopback holds Fleet's own database, broker and web app; and it runs before the protected
tests are restored and the hidden ones added, so it changes neither."""

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
DIRECT = (
    "import socket, sys; connection = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30); "
    "connection.sendall(f'GET /{sys.argv[2]} HTTP/1.0\\r\\n\\r\\n'.encode()); connection.recv(64)"
)
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


def add_repo_with_a_build_script(fleet: Fleet, name: str, *args: str, options: tuple[str, ...] = ()) -> None:
    """A sample repo whose setup runs its build_env.py (with args) and whose requirements.txt is a key file."""
    repo = fleet.tmp / name
    write_sample_repo(repo)
    (repo / "build_env.py").write_text("print('environment built')\n")
    (repo / "requirements.txt").write_text("fleetdep==1\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a build script and its pin", cwd=repo)
    setup = shlex.join([sys.executable, "build_env.py", *args])
    fleet.run("repo", "add", name, str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--setup-cmd", setup, *options)


def submit_build_script(fleet: Fleet, repo: str, script: str, *more: str) -> int:
    """A ticket on test_add whose agent rewrites build_env.py to script, bumps the pin (so the verification runs
    the setup with the diff's code) and runs the shell lines in more; its id."""
    agent = "\n".join([f"cat > build_env.py <<'EOF'\n{script}EOF", "echo fleetdep==2 > requirements.txt", *more])
    [ticket] = fleet.submit(
        "--repo", repo, "--title", "add", "--body", "tests/test_calc.py::test_add",
        "--agent-cmd", f"sh -c {shlex.quote(agent)}", "--attempts", "1",
    )  # fmt: skip
    return int(ticket["id"])


def test_a_setup_reaches_its_setup_hosts_through_the_proxy_and_nothing_else(
    embedded: Fleet, server: SetupServer
) -> None:
    fleet = embedded
    add_repo(fleet, "listed", python(THROUGH_PROXY, f"http://{server.address}/listed"), "--setup-host", server.address)
    add_repo(fleet, "unlisted", python(THROUGH_PROXY, f"http://{server.address}/unlisted"))
    add_repo(fleet, "direct", python(DIRECT, str(server.port), "direct"))
    add_repo(fleet, "host", python(DIRECT, str(server.port), "host"), "--setup-network", "host")
    listed_but_none = ("--setup-host", server.address, "--setup-network", "none")
    add_repo(fleet, "none", python(THROUGH_PROXY, f"http://{server.address}/none"), *listed_but_none)
    tickets = {name: fix_add(fleet, name) for name in ("listed", "unlisted", "direct", "host", "none")}
    fleet.up()
    shown = {name: fleet.json("show", str(ticket_id)) for name, ticket_id in tickets.items()}

    assert shown["listed"]["status"] == "needs_review", shown["listed"]
    assert server.count("/listed") >= 2  # the agent's worktree, then the verification's checkout
    [review] = fleet.json("review", "show", str(tickets["listed"]))["candidates"]
    assert f"egress allowed: {server.address}" in review["transcript"]

    assert shown["unlisted"]["status"] == "error" and server.count("/unlisted") == 0
    # the setup fails at the base first (no diff could be verified): the agent's own never runs
    assert (
        "the tests could not run at the base commit: setup in the baseline checkout failed"
        in shown["unlisted"]["reason"]
    )
    assert f"egress denied: {server.address} (not on the allow-list)" in shown["unlisted"]["reason"]
    assert "a setup reaches only FLEET_SETUP_HOSTS and the repository's setup_hosts" in shown["unlisted"]["reason"]

    for name in ("direct", "none"):  # a private loopback that holds nothing; no proxy for "none"
        assert shown[name]["status"] == "error" and server.count(f"/{name}") == 0, shown[name]
        assert "setup in the baseline checkout failed (exit 1)" in shown[name]["reason"]
    assert shown["host"]["status"] == "needs_review", shown["host"]  # the host's network, chosen
    assert server.count("/host") >= 2


def test_a_diffs_build_script_cannot_reach_the_hosts_servers(embedded: Fleet, server: SetupServer) -> None:
    """The agent rewrites the setup's script and bumps a key file, so the verification builds a fresh environment
    with the diff's code: through the proxy it reaches nothing of the host; with the host's network it does."""
    fleet = embedded
    for name, options in (("guarded", ()), ("open", ("--setup-network", "host"))):
        add_repo_with_a_build_script(fleet, name, str(server.port), name, options=options)
    tickets = {name: submit_build_script(fleet, name, PROBING_SETUP) for name in ("guarded", "open")}
    fleet.up()
    for name in ("guarded", "open"):
        [attempt] = fleet.json("show", str(tickets[name]))["runs"][0]["attempts"]
        assert attempt["verification"] is not None, attempt  # the diff was verified: its build script ran
    assert server.count("/escaped-open") >= 1  # the host's network, chosen: the script reached the server
    assert server.count("/escaped-guarded") == 0


# The same build script, rewriting the test the ticket is judged by so that it passes whatever calc.py says, or
# leaving a conftest.py the diff has git ignore, whose import fixes add in memory only.
FORGING_SETUPS = {
    "rewrite": """import pathlib
test = pathlib.Path('tests/test_calc.py')
test.write_text(test.read_text().replace('assert add(2, 3) == 5', 'assert add(2, 3) == add(2, 3)'))
""",
    "ignored-conftest": """import pathlib
pathlib.Path('tests/conftest.py').write_text('import calc\\ncalc.add.__code__ = (lambda a, b: a + b).__code__\\n')
""",
}
FORGED = {"rewrite": "tests/test_calc.py", "ignored-conftest": "tests/conftest.py"}


@pytest.mark.parametrize("forgery", sorted(FORGING_SETUPS))
def test_a_diffs_build_script_cannot_forge_the_tests_it_is_judged_by(embedded: Fleet, forgery: str) -> None:
    fleet = embedded
    add_repo_with_a_build_script(fleet, "forged")
    ticket = submit_build_script(fleet, "forged", FORGING_SETUPS[forgery], "echo tests/conftest.py >> .gitignore")
    fleet.up()
    shown = fleet.json("show", str(ticket))
    [attempt] = shown["runs"][0]["attempts"]
    assert attempt["verification"]["verdict"] == "gamed", attempt["verification"]
    assert f"reverted: {FORGED[forgery]}" in attempt["verification"]["reasons"][0]
    assert shown["status"] != "needs_review"


# A build script that plants links where the verification writes after it: in place of the folder of a hidden test
# (which the verification copies in), and of the folder of a protected file the diff adds (which it deletes), both
# pointing at a folder of the host.
LINKING_SETUP = """import os, shutil, sys
host = sys.argv[1]
os.symlink(host, 'checks')
shutil.rmtree('plugins')
os.symlink(host, 'plugins')
"""


def test_a_diffs_build_script_cannot_make_the_verification_write_or_delete_through_a_link(embedded: Fleet) -> None:
    fleet = embedded
    host = fleet.tmp / "host-files"
    host.mkdir()
    for name in ("test_hidden_calc.py", "conftest.py"):
        (host / name).write_text("host file\n")
    hidden = fleet.tmp / "hidden" / "checks"
    hidden.mkdir(parents=True)
    (hidden / "test_hidden_calc.py").write_text(
        "from calc import add\n\n\ndef test_add_more():\n    assert add(1, 1) == 2\n"
    )
    add_repo_with_a_build_script(fleet, "linked", str(host), options=("--hidden-tests", str(hidden.parent)))
    ticket = submit_build_script(fleet, "linked", LINKING_SETUP, "mkdir plugins && touch plugins/conftest.py")
    fleet.up()
    [attempt] = fleet.json("show", str(ticket))["runs"][0]["attempts"]
    verification = attempt["verification"]
    assert verification["verdict"] != "error", verification  # the links were in place, and the tests ran after
    assert (host / "test_hidden_calc.py").read_text() == "host file\n"  # not written through the linked folder
    assert (host / "conftest.py").read_text() == "host file\n"  # not deleted through the linked folder
