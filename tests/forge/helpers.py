"""What the forge tests share: a repository delivered by pull request, a dispatcher stub, the settings in-process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from db.engine import Database
from system.settings import Settings
from tests.conftest import Fleet
from tests.core.conftest import scripted
from tests.forge.conftest import served_sample
from tests.forge.gitserver import GitServer
from tests.forge.scripted_forge import ScriptedForge
from workers.agents.scripted import SAMPLE_TEST_CMD


class StubDispatcher:
    """The control plane's Dispatcher seam; the next `fleet up` schedules what was written."""

    def __init__(self) -> None:
        self.kicks = 0

    def kick(self, db: Database, settings: Settings) -> int:
        self.kicks += 1
        return 0

    def queue_depths(self) -> dict[str, int | None]:
        return {}

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return None


def settings_of(fleet: Fleet) -> Settings:
    """The settings the fleet's own processes build from its environment."""
    env = fleet.env
    return Settings(
        home=fleet.home,
        database_url=fleet.database_url,
        git_token=env["FLEET_GIT_TOKEN"],
        github_token=env["FLEET_GITHUB_TOKEN"],
        webhook_secret=env["FLEET_WEBHOOK_SECRET"],
        public_url=env["FLEET_PUBLIC_URL"],
    )


def pr_repo(fleet: Fleet, server: GitServer, forge: ScriptedForge, *options: str) -> str:
    url = served_sample(fleet, server)
    fleet.run(
        "repo", "add", "shop", url, "--test-cmd", SAMPLE_TEST_CMD, "--deliver", "pr", "--forge-url", forge.url,
        "--forge-repo", "acme/shop", "--feedback-user", "alice", *options,
    )  # fmt: skip
    return url


def approved_ticket(fleet: Fleet, *script: str) -> dict[str, Any]:
    """A ticket whose first verified attempt is approved: its PR is open."""
    [ticket] = fleet.submit(
        "--repo", "shop", "--title", "add() subtracts", "--body", "tests/test_calc.py::test_add fails",
        "--agent-cmd", scripted(*script), "--attempts", "1",
    )  # fmt: skip
    fleet.up()
    decision: dict[str, Any] = fleet.json("review", "approve", str(ticket["id"]))
    return decision


def attempts(fleet: Fleet, ticket: int) -> list[dict[str, Any]]:
    return [a for run in fleet.json("show", str(ticket))["runs"] for a in run["attempts"]]
