"""The composition root's one wire: the control plane reaches the workers through a Celery dispatcher."""

from __future__ import annotations

from collections.abc import Sequence

from db.engine import Database
from orchestrator.dispatch import Dispatcher
from system.settings import Settings


def celery_dispatcher(settings: Settings) -> Dispatcher:
    """The workers' dispatcher for settings' broker (Celery is imported only when something is sent)."""
    return EmbeddedDispatcher(settings) if settings.embedded else _celery(settings)


def _celery(settings: Settings) -> Dispatcher:
    from workers.celery_app import create_app
    from workers.queue import Dispatcher as CeleryDispatcher

    return CeleryDispatcher(create_app(settings))


class EmbeddedDispatcher:
    """Embedded mode: queue depths are counted in the broker's folder (`fleet status` loads no Celery); sending
    builds the Celery dispatcher on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sender: Dispatcher | None = None

    def _celery(self) -> Dispatcher:
        if self._sender is None:
            self._sender = _celery(self.settings)
        return self._sender

    def kick(self, db: Database, settings: Settings) -> int:
        return self._celery().kick(db, settings)

    def queue_depths(self) -> dict[str, int | None]:
        from workers.embedded_queue import depths

        return depths(self.settings.broker_dir)

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        from workers.agents import agent_problem

        return agent_problem(name, agent_classes)
