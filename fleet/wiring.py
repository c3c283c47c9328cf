"""The composition root's one wire: the control plane reaches the workers through a Celery dispatcher."""

from __future__ import annotations

from orchestrator.dispatch import Dispatcher
from system.settings import Settings


def celery_dispatcher(settings: Settings) -> Dispatcher:
    """The workers' dispatcher for settings' broker (Celery is imported only when something is sent)."""
    from workers.celery_app import create_app
    from workers.queue import Dispatcher as CeleryDispatcher

    return CeleryDispatcher(create_app(settings))
