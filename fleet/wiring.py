"""The composition root's one wire: the control plane reaches the workers through a Celery dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `fleet status` imports this module: no SQLAlchemy, pydantic or Celery at import
    from fastapi import FastAPI

    from db.engine import Database
    from orchestrator.dispatch import Dispatcher, QueueDepths
    from system.places import Place
    from system.settings import Settings


def celery_dispatcher(settings: Settings) -> Dispatcher:
    """The workers' dispatcher for settings' broker (Celery is imported only when something is sent)."""
    return EmbeddedDispatcher(settings) if settings.embedded else _celery(settings)


def web_app() -> FastAPI:
    """The dashboard and API for the settings in the environment, for a server other than `fleet web` to serve:
    `uvicorn --factory fleet.wiring:web_app` (the app checks the Host header itself)."""
    from orchestrator.web.app import create_app
    from system.settings import Settings

    return create_app(Settings(), celery_dispatcher)


def queue_depths_of(place: Place) -> QueueDepths:
    """Where `fleet status` counts waiting messages: the embedded broker's folder, Redis's lists, else the broker
    through Celery."""
    if place.embedded:
        return BrokerFolder(place.broker_dir)
    from workers.redis_queue import SCHEMES

    if place.broker_url.startswith(SCHEMES):
        return RedisLists(place.broker_url)
    from system.settings import Settings

    return celery_dispatcher(Settings())


def _celery(settings: Settings) -> Dispatcher:
    from workers.celery_app import create_app
    from workers.queue import Dispatcher as CeleryDispatcher

    return CeleryDispatcher(create_app(settings))


class BrokerFolder:
    """The embedded broker's queue depths, counted in its folder: no Celery, no settings."""

    def __init__(self, broker_dir: Path) -> None:
        self.broker_dir = broker_dir

    def queue_depths(self) -> dict[str, int | None]:
        from workers.embedded_queue import depths

        return depths(self.broker_dir)


class RedisLists:
    """A Redis broker's queue depths, the length of its lists: no Celery, no kombu, no settings."""

    def __init__(self, url: str) -> None:
        self.url = url

    def queue_depths(self) -> dict[str, int | None]:
        from workers.redis_queue import depths

        return depths(self.url)


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
        return BrokerFolder(self.settings.broker_dir).queue_depths()

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        from workers.agents import agent_problem

        return agent_problem(name, agent_classes)
