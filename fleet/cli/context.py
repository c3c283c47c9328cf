"""The Context every command but the reading ones builds at its entry point: settings, database, dispatcher."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from db.engine import Database
from db.migrate import SchemaTooNew, upgrade
from db.specs import SpecError, parse
from fleet.cli.settings import load_settings
from fleet.wiring import celery_dispatcher
from orchestrator.dispatch import AgentRule, LazyDispatcher
from orchestrator.errors import FleetError


class Context:
    """Settings, database and dispatcher, built once per command at the entry point."""

    def __init__(self) -> None:
        self.settings = load_settings()
        try:
            self.settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FleetError(f"cannot make Fleet's folder at {self.settings.where()}: {exc.strerror}") from None
        self.db = Database(self.settings.db_url)
        try:
            upgrade(self.db)
        except SchemaTooNew as exc:
            raise FleetError(str(exc)) from None
        self.dispatcher = LazyDispatcher(self.settings, celery_dispatcher)

    @property
    def agents(self) -> AgentRule:
        """The agents tickets and repositories may name."""
        return AgentRule(self.dispatcher, self.settings.agent_classes)


M = TypeVar("M", bound=BaseModel)


def spec_from(model: type[M], options: dict[str, Any]) -> M:
    """The options that were given (not None) as a spec; a value out of bounds is one FleetError line."""
    try:
        return parse(model, {key: value for key, value in options.items() if value is not None})
    except SpecError as exc:
        raise FleetError(str(exc)) from None
