"""A real Fleet home with tickets in every state the web shows, the web app on it, and a token per role."""

from __future__ import annotations

import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db.specs import RepoSpec, TicketSpec
from orchestrator.repos import register_repo
from orchestrator.tickets import submit
from orchestrator.web.serving import Listener
from system.settings import Settings
from tests.conftest import Fleet, make_test_fleet
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command, write_sample_repo

ROLES = ("viewer", "submitter", "reviewer", "admin")
OWNER = "tester"  # FLEET_USER of the CLI, and the name of the submitter token that owns the tickets


def pytest_configure(config: pytest.Config) -> None:
    # Starlette 1.x suggests httpx2 for its TestClient; httpx still works and is what the brief pins.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def make_fleet(tmp: Path) -> Fleet:
    """An embedded Fleet whose CLI user owns the tickets, with leases short enough for the recovery pages."""
    return make_test_fleet(
        tmp, f"sqlite:///{tmp / 'home' / 'fleet.db'}", "embedded", FLEET_LEASE_SECONDS="3", FLEET_USER=OWNER
    )


def settings_for(fleet: Fleet) -> Settings:
    return Settings(home=fleet.home, database_url=fleet.database_url, broker_url="embedded")


@dataclass
class Web:
    """The app, its Fleet home and one token per role (plus `other`, a submitter who owns nothing)."""

    fleet: Fleet
    settings: Settings
    app: Any
    tokens: dict[str, str]
    tickets: dict[str, int]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def client(self) -> Any:
        from fastapi.testclient import TestClient

        # https: the session cookie is Secure, and httpx only sends Secure cookies over https.
        return TestClient(self.app, base_url="https://localhost")


def app_with_token(folder: Path, role: str = "viewer") -> Any:
    """The web app over a new Fleet in folder, with one token of role in app.state.token (dispose its db after)."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app
    from orchestrator.web.auth import Role, new_token

    app = create_app(settings_for(make_fleet(folder)), celery_dispatcher)
    app.state.token = new_token(app.state.fleet.db, Role(role), f"{role}1", "test")[1]
    return app


def make_tokens(app: Any) -> dict[str, str]:
    from orchestrator.web.auth import Role, new_token

    db = app.state.fleet.db
    names = {"viewer": "viewer1", "submitter": OWNER, "reviewer": "reviewer1", "admin": "admin1"}
    tokens = {role: new_token(db, Role(role), names[role], "conftest")[1] for role in ROLES}
    tokens["other"] = new_token(db, Role.SUBMITTER, "other1", "conftest")[1]
    return tokens


def scripted_spec(title: str, script: str, body: str, attempts: int = 2) -> TicketSpec:
    return TicketSpec(
        repo="calc", title=title, body=body, agent_cmd=shlex.join(scripted_command(script)), attempts=attempts
    )


def add_sample_repo(fleet: Fleet, app: Any) -> Path:
    path = fleet.tmp / "calc"
    write_sample_repo(path)
    register_repo(
        app.state.fleet.db, RepoSpec(name="calc", path=str(path), test_cmd=SAMPLE_TEST_CMD), app.state.fleet.agents
    )
    return path


def queue(app: Any, *specs: TicketSpec) -> list[int]:
    """Submit as the CLI does (same function, same actor), without paying for a process per ticket."""
    state = app.state.fleet
    return [t.id for t in submit(state.db, state.dispatcher, state.settings, list(specs), state.settings.home, OWNER)]


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """Tickets in review (four, so each action test has its own), one failed, one still queued."""
    from fleet.wiring import celery_dispatcher
    from orchestrator.web.app import create_app

    fleet = make_fleet(tmp_path_factory.mktemp("web"))
    settings = settings_for(fleet)
    app = create_app(settings, celery_dispatcher, sse_seconds=0.8, poll_seconds=0.1)
    add_sample_repo(fleet, app)
    body = "tests/test_calc.py::test_add fails"
    review_ids = queue(app, *(scripted_spec(f"add() subtracts ({name})", "fix-add", body) for name in "ABCD"))
    [failed] = queue(app, scripted_spec("div() truncates", "never", "tests/test_calc.py::test_div fails", 1))
    fleet.up()
    [queued] = queue(app, scripted_spec("add() again", "fix-add", body))
    tickets = dict(zip(["review_a", "review_b", "review_c", "review_d"], review_ids, strict=True))
    tickets |= {"failed": failed, "queued": queued}
    yield Web(fleet=fleet, settings=settings, app=app, tokens=make_tokens(app), tickets=tickets)
    app.state.fleet.db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made by the openssl command line."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


class Server:
    """uvicorn serving the app on a free loopback port in a thread of this process, configured as `fleet web`."""

    def __init__(self, app: Any, listener: Listener | None = None) -> None:
        import uvicorn

        self.listener = listener or Listener("127.0.0.1", free_port())
        self.server = uvicorn.Server(self.listener.config(app, graceful_seconds=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return self.listener.url.rstrip("/")

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
