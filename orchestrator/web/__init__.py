"""The web dashboard and HTTP API: `create_app(settings, workers)` builds it; `fleet web` serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from orchestrator.dispatch import DispatcherFactory
    from system.settings import Settings


def create_app(settings: Settings, workers: DispatcherFactory, **options: Any) -> FastAPI:
    """The FastAPI app for settings (see orchestrator.web.app.create_app)."""
    from orchestrator.web.app import create_app as build

    return build(settings, workers, **options)
