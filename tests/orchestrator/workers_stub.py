"""The workers' side of the dispatcher seam for control-plane tests: no broker, only the agent registry."""

from __future__ import annotations

from collections.abc import Sequence

from db.engine import Database
from orchestrator.dispatch import AgentRule
from system.settings import Settings
from workers.agents import agent_problem


class Workers:
    """The workers' side of the dispatcher seam, without a broker: only the agent registry answers."""

    def kick(self, db: Database, settings: Settings) -> int:
        return 0

    def queue_depths(self) -> dict[str, int | None]:
        return {}

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return agent_problem(name, agent_classes)


AGENTS = AgentRule(Workers())
