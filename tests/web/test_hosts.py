"""The names the web app answers to: a page whose DNS name rebinds to this machine sends its own name in Host, and
is refused before any route or login; this machine's names, the address listened on and FLEET_WEB_HOSTS pass."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from orchestrator.web.serving import Listener
from system.settings import Settings
from tests.web.conftest import Server, app_with_token, free_port, make_fleet, settings_for

FORGED = "attacker.example"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = app_with_token(tmp_path_factory.mktemp("hosts"), "admin")
    yield app
    app.state.fleet.db.dispose()


def answers(server: Server, host: str, token: str) -> dict[str, tuple[int, str]]:
    """(status, body) of a page, the login form, the API with a valid token, a webhook and a static file."""
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers={"Host": host}) as client:
        replies = {
            "page": client.get("/"),
            "login": client.get("/login"),
            "api": client.get("/api/tickets", headers=bearer),
            "hook": client.post("/api/hooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"}),
            "static": client.get("/static/style.css"),
        }
    return {name: (reply.status_code, reply.text) for name, reply in replies.items()}


def test_a_forged_host_is_refused_on_pages_api_and_hooks_before_login(app: Any) -> None:
    with Server(app) as server:
        port = server.listener.port
        for host in (FORGED, f"{FORGED}:{port}", f"localhost.{FORGED}", "127.0.0.1.nip.io", "[::2]"):
            for name, (status, text) in answers(server, host, app.state.token).items():
                assert (status, text) == (400, "Invalid host header"), (host, name)


def test_this_machines_names_pass_on_any_port(app: Any) -> None:
    with Server(app) as server:
        for host in ("localhost", f"127.0.0.1:{server.listener.port}", "[::1]:8600", "LocalHost"):
            replies = answers(server, host, app.state.token)
            assert {name: status for name, (status, _) in replies.items()} == {
                "page": 303,  # to the login form
                "login": 200,
                "api": 200,
                "hook": 401,  # unsigned: the hook's own answer
                "static": 200,
            }, host


def app_answering_to(folder: Path, names: str, listened_on: str | None = None) -> Any:
    """An admin's app whose FLEET_WEB_HOSTS is names (comma-separated, as the environment gives it)."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    settings = settings_for(make_fleet(folder))
    settings = Settings(home=settings.home, database_url=settings.database_url, broker_url="embedded", web_hosts=names)
    app = create_app(settings, celery_dispatcher, listened_on=listened_on)
    app.state.token = new_token(app.state.fleet.db, Role.ADMIN, "admin1", "test")[1]
    return app


def test_a_listed_name_passes_and_no_other(tmp_path: Path) -> None:
    app = app_answering_to(tmp_path, "fleet.example.com,*.corp.example,www.fleet.example")
    with Server(app) as server:
        for host in ("fleet.example.com", "FLEET.example.com:443", "dash.corp.example"):
            assert answers(server, host, app.state.token)["api"][0] == 200, host
        # www.NAME listed does not send NAME to it (Starlette's www redirect is off): NAME is refused.
        for host in ("evil.fleet.example.com", "corp.example", "fleet.example", FORGED):
            assert answers(server, host, app.state.token)["api"] == (400, "Invalid host header"), host
    app.state.fleet.db.dispose()


def test_star_answers_to_any_name(tmp_path: Path) -> None:
    app = app_answering_to(tmp_path, "*")
    with Server(app) as server:
        assert answers(server, FORGED, app.state.token)["api"][0] == 200
    app.state.fleet.db.dispose()


def test_the_address_fleet_web_listens_on_is_a_name_served(tmp_path: Path) -> None:
    app = app_answering_to(tmp_path, "", listened_on="10.0.0.5")
    with Server(app) as server:
        assert answers(server, "10.0.0.5:8600", app.state.token)["api"][0] == 200
        assert answers(server, "10.0.0.6", app.state.token)["api"] == (400, "Invalid host header")
    app.state.fleet.db.dispose()


class PlainUvicorn(Server):
    """uvicorn serving the app as `uvicorn --factory` or gunicorn's worker would: its own Config, no Listener."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.listener = Listener("127.0.0.1", free_port())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.listener.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


def test_the_app_refuses_a_forged_host_however_it_is_served(app: Any) -> None:
    with PlainUvicorn(app) as server:
        replies = answers(server, FORGED, app.state.token)
        assert {name: replies[name] for name in ("page", "login", "api", "hook")} == dict.fromkeys(
            ("page", "login", "api", "hook"), (400, "Invalid host header")
        )
        assert answers(server, f"localhost:{server.listener.port}", app.state.token)["api"][0] == 200


def test_the_factory_served_by_uvicorn_itself_refuses_a_forged_host(tmp_path: Path) -> None:
    port, home = free_port(), tmp_path / "home"
    env = os.environ | {"FLEET_HOME": str(home), "FLEET_DATABASE_URL": "", "FLEET_BROKER_URL": "embedded"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "fleet.wiring:web_app", "--port", str(port)]
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as served:
        try:
            url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
            while True:
                try:
                    local = httpx.get(f"{url}/login", headers={"Host": "localhost"})
                    break
                except httpx.TransportError:
                    assert served.poll() is None and time.monotonic() < deadline, "uvicorn did not serve the app"
                    time.sleep(0.2)
            forged = httpx.get(f"{url}/login", headers={"Host": FORGED})
        finally:
            served.terminate()
    assert local.status_code == 200 and (forged.status_code, forged.text) == (400, "Invalid host header")


def test_the_names_follow_the_address_listened_on() -> None:
    local = ("localhost", "127.0.0.1", "[::1]")
    assert Listener("127.0.0.1", 8600).answers_to == local
    named = ("fleet.example.com",)
    assert Listener("10.0.0.5", 8600, hosts=named).answers_to == (*local, "10.0.0.5", *named)
    assert Listener("fe80::1", 8600).answers_to == (*local, "[fe80::1]")
    assert Listener("Fleet.LAN", 8600).answers_to == (*local, "fleet.lan")
    assert Listener("0.0.0.0", 8600, hosts=named).answers_to == (*local, *named)
    assert Listener("::", 8600, hosts=("*",)).answers_to == ("*",)


def test_every_interface_without_names_is_refused_in_one_line(tmp_path: Path) -> None:
    from fleet.cli.web import commands
    from orchestrator.errors import FleetError

    for address in ("0.0.0.0", "::"):
        with pytest.raises(FleetError) as refused:
            Listener(address, 8600, trusted_proxies=("10.0.0.2",)).check()
        assert f"listening on every interface ({address}) needs FLEET_WEB_HOSTS" in str(refused.value)
        assert "\n" not in str(refused.value)
    Listener("0.0.0.0", 8600, trusted_proxies=("10.0.0.2",), hosts=("fleet.example.com",)).check()
    env = {"FLEET_HOME": str(tmp_path / "home"), "FLEET_DATABASE_URL": "", "FLEET_BROKER_URL": "embedded"}
    done = CliRunner().invoke(commands, ["web", "--host", "0.0.0.0", "--trusted-proxy", "10.0.0.2"], env=env)
    assert done.exit_code == 1 and done.stderr.startswith("error: listening on every interface (0.0.0.0) needs")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("value", ["fleet.example.com:8600", "https://fleet.example.com", "fleet example", "a.*.b"])
def test_a_bad_name_in_the_setting_is_one_line_naming_it(tmp_path: Path, value: str) -> None:
    from fleet.cli.web import commands

    env = {"FLEET_HOME": str(tmp_path / "home"), "FLEET_DATABASE_URL": "", "FLEET_WEB_HOSTS": f"localhost,{value}"}
    done = CliRunner().invoke(commands, ["web"], env=env)
    assert done.exit_code == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: FLEET_WEB_HOSTS: {value!r} is not a host name, an IP address"), done.stderr
