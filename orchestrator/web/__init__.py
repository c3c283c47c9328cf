"""The web dashboard and HTTP API: `create_app(settings)` builds it; `fleet web` serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from orchestrator.settings import Settings


def create_app(settings: Settings, **options: Any) -> FastAPI:
    """The FastAPI app for settings (see orchestrator.web.app.create_app)."""
    from orchestrator.web.app import create_app as build

    return build(settings, **options)
