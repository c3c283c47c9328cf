"""The real agent CLIs, installed at pinned versions (tests/realcli/cache.py), each driven through Fleet against the
scripted model server (workers/agents/llm/scripted_server.py), sandboxed as by default, on the embedded default.

For each CLI one Fleet runs three tickets: one the CLI should fix, one whose CLI crashes (an unknown flag), one
whose key the server refuses (401). A registry that refuses an install skips that CLI, or fails it under CI=true.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, Fleet, make_test_fleet
from tests.realcli.cache import PINS, InstallRefused, ensure
from workers.agents.llm.scripted_server import ScriptedModelServer
from workers.agents.llm.wire import PRICE_IN_PER_MTOK, PRICE_OUT_PER_MTOK

CLIS = ("claude-code", "codex", "opencode", "aider", "mini-swe-agent", "gemini")
KEY = "fleet-realcli-key"
WRONG_KEY = "not-the-key"
# The gateway prices every model the CLIs ask for (side calls' smaller models too) as the scripted server bills it.
BILLED_PRICE = f"{PRICE_IN_PER_MTOK}/{PRICE_OUT_PER_MTOK}"
BILLED_MODELS = (
    "scripted",
    "gpt-5-codex",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
)
CRASH_FLAG = "--no-such-flag"


@dataclass(frozen=True)
class Endpoint:
    """How one CLI is pointed at the server: its model, its base URL variable, its key variable."""

    model: str
    base_url: str  # the variable naming the base URL
    key: str  # the variable naming the API key
    root: bool = False  # the base URL is the server's root (the CLI adds /v1 or /v1beta), not …/v1


ENDPOINTS = {
    "claude-code": Endpoint("claude-sonnet-4-5", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", root=True),
    "codex": Endpoint("gpt-5-codex", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "opencode": Endpoint("scripted", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "aider": Endpoint("openai/scripted", "OPENAI_API_BASE", "OPENAI_API_KEY"),
    "mini-swe-agent": Endpoint("openai/scripted", "OPENAI_API_BASE", "OPENAI_API_KEY"),
    "gemini": Endpoint("gemini-2.5-pro", "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", root=True),
}


@dataclass
class Outcome:
    """What Fleet recorded for one CLI's three tickets, and what the server billed for the one that works."""

    cli: str
    fleet: Fleet
    fixed: dict[str, Any]
    crashed: dict[str, Any]
    refused: dict[str, Any]
    billed: tuple[int, int, float]  # tokens in, tokens out, cost over every answer of the fixing run


def installed(cli: str) -> Path:
    """The pinned CLI's executable; a registry's refusal skips the test (fails it under CI=true)."""
    try:
        return ensure(cli)
    except InstallRefused as refused:
        pin = PINS[cli]
        message = f"{pin.registry} would not install {pin.package}=={pin.version}: {refused}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def attempts(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for run in ticket["runs"] for a in run["attempts"]]


def _submit(fleet: Fleet, cli: str, title: str, *extra: str) -> int:
    endpoint = ENDPOINTS[cli]
    body = "tests/test_calc.py::test_add fails: add() subtracts. Fix it in calc.py."
    options = ["--agent", cli, "--model", endpoint.model, "--attempts", "2", "--timeout", "300"]
    options += ["--agent-env", endpoint.base_url, "--agent-env", endpoint.key, *extra]
    [ticket] = fleet.submit("--repo", "calc", "--title", title, "--body", body, *options)
    return int(ticket["id"])


@pytest.fixture(scope="module", params=CLIS)
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    cli: str = request.param
    program = installed(cli)
    endpoint = ENDPOINTS[cli]
    with ScriptedModelServer(api_key=KEY) as server:
        env = {
            "PATH": f"{program.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            endpoint.base_url: server.root if endpoint.root else server.url,
            endpoint.key: KEY,
            "FLEET_MODEL_PRICES": json.dumps([f"{model}={BILLED_PRICE}" for model in BILLED_MODELS]),
        }
        fleet = make_test_fleet(tmp_path_factory.mktemp(cli), **env)
        fleet.sample_repo()
        fixed = _submit(fleet, cli, "add() subtracts")
        crashed = _submit(fleet, cli, "add() subtracts (crash)", "--agent-arg", CRASH_FLAG)
        fleet.up(concurrency=2)
        _timing(fleet, cli, "fix and crash")
        billed = server.ledger.totals()
        fleet.env[endpoint.key] = WRONG_KEY
        refused = _submit(fleet, cli, "add() subtracts (wrong key)")
        fleet.up(concurrency=1)
        _timing(fleet, cli, "wrong key")
        shown = {i: fleet.json("show", str(i)) for i in (fixed, crashed, refused)}
        for ticket in shown.values():
            for a in attempts(ticket):
                print(f"[realcli] {cli} {a['verdict']} {a['started_at']} {a['finished_at']} {(a['error'] or '')[:160]}")
        yield Outcome(cli, fleet, shown[fixed], shown[crashed], shown[refused], billed)


def _timing(fleet: Fleet, cli: str, what: str) -> None:
    print(f"[realcli] {cli}: {what} done at {time.monotonic():.1f}")
