"""`fleet token`, `fleet web` and `fleet watch`, added to a command line by fleet.cli.web.register."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fleet.cli.web import check_bind, is_loopback, register
from tests.web.conftest import make_fleet

# The real `fleet` command line, which registers these commands with the others.
FLEET_WITH_WEB = "from fleet.cli import main; main()"


@pytest.fixture
def cli(tmp_path: Path) -> tuple[typer.Typer, dict[str, str]]:
    app = typer.Typer()
    register(app)
    env = {"FLEET_HOME": str(tmp_path / "home"), "FLEET_DATABASE_URL": "", "FLEET_BROKER_URL": "embedded"}
    return app, env


def test_token_create_prints_the_token_once_and_list_never(cli: tuple[typer.Typer, dict[str, str]]) -> None:
    app, env = cli
    made = CliRunner().invoke(app, ["token", "create", "--role", "admin", "--name", "boss"], env=env)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("fleet_1_") and "shown only this once" in made.stderr
    listed = CliRunner().invoke(app, ["token", "list", "--json"], env=env)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"]) for r in rows] == [("boss", "admin")]
    assert token.split("_", 2)[2] not in listed.stdout
    again = CliRunner().invoke(app, ["token", "create", "--role", "admin", "--name", "boss"], env=env)
    assert again.exit_code == 1 and "exists already" in again.stderr
    bad = CliRunner().invoke(app, ["token", "create", "--role", "root"], env=env)
    assert (
        bad.exit_code == 1
        and bad.stderr.strip()
        == "error: role: must be one of 'viewer', 'submitter', 'reviewer' or 'admin' (got 'root')"
    )
    assert CliRunner().invoke(app, ["token", "revoke", "1"], env=env).exit_code == 0
    assert json.loads(CliRunner().invoke(app, ["token", "list", "--json"], env=env).stdout) == []
    assert CliRunner().invoke(app, ["token", "revoke", "7"], env=env).exit_code == 1


def test_web_refuses_other_addresses_without_a_token(cli: tuple[typer.Typer, dict[str, str]]) -> None:
    app, env = cli
    plain = CliRunner().invoke(app, ["web", "--host", "0.0.0.0", "--port", "1"], env=env)
    assert plain.exit_code == 1 and plain.stderr.count("\n") == 1
    assert plain.stderr.startswith("error: refusing plain HTTP on 0.0.0.0: browsers would drop the Secure login")
    proxied = ["web", "--host", "0.0.0.0", "--port", "1", "--trusted-proxy", "10.0.0.2"]
    refused = CliRunner().invoke(app, proxied, env=env | {"FLEET_WEB_HOSTS": "fleet.example.com"})
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        "error: refusing to listen on 0.0.0.0: no API token exists yet; "
        "create one first with `fleet token create --role admin` "
        "(or `fleet token bootstrap --from-file SECRET_FILE` on a new deployment)"
    )
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org"))
    check_bind("127.0.0.1", 0)
    check_bind("0.0.0.0", 1)


def test_fleet_web_serves_on_loopback(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", FLEET_WITH_WEB, "web", "--port", str(port)],
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert answer.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "fleet web did not answer in 30 s"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tickets", timeout=2)
        assert refused.value.code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_watch_draws_the_fleet_figures(cli: tuple[typer.Typer, dict[str, str]]) -> None:
    app, env = cli
    shown = CliRunner().invoke(app, ["watch", "--count", "2", "--interval", "0.1"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Fleet" in shown.stdout and "Running" in shown.stdout and "review backlog 0" in shown.stdout
