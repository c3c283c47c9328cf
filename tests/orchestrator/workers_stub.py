"""The workers' side of the dispatcher seam for control-plane tests: no broker, only the agent registry."""

from __future__ import annotations

from collections.abc import Sequence

from db.engine import Database
from db.specs import RepoSettings
from orchestrator.dispatch import AgentRule
from system.settings import Settings
from workers.agents import agent_problem
from workers.pipeline import Job


class Workers:
    """The workers' side of the dispatcher seam, without a broker: only the agent registry answers."""

    def kick(self, db: Database, settings: Settings) -> int:
        return 0

    def queue_depths(self) -> dict[str, int | None]:
        return {}

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return agent_problem(name, agent_classes)


AGENTS = AgentRule(Workers())


def job_with(settings: RepoSettings, source: str = "/nowhere") -> Job:
    """A worker's job for a repository with these settings (what the pipeline reads them through)."""
    return Job(
        attempt_id=1,
        number=1,
        run_index=0,
        ticket_id=1,
        repo_id=1,
        source=source,
        base_sha="0" * 40,
        agent="shell",
        agent_options={},
        prompt="",
        diff="",
        test_cmd="true",
        setup_cmd=None,
        repo_settings=settings,
    )
