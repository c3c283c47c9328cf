"""The control plane's one seam to the workers: the few calls it makes, as a Protocol the workers satisfy.

The control plane never imports workers/. The composition root (fleet/) hands it a dispatcher factory;
workers.queue.Dispatcher satisfies the Protocol structurally, and tests may pass a stub instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from db.engine import Database
from system.settings import Settings


class QueueDepths(Protocol):
    """What `fleet status` and the web's figures ask of the broker."""

    def queue_depths(self) -> dict[str, int | None]:
        """Messages waiting per queue, or None where the broker cannot tell."""
        ...


class Dispatcher(QueueDepths, Protocol):
    """What tickets, review and the web ask of the workers."""

    def kick(self, db: Database, settings: Settings) -> int:
        """Send waiting attempts into free worker slots; returns how many were sent."""
        ...

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        """Why the workers would refuse the agent called name, or None when they can run it."""
        ...


DispatcherFactory = Callable[[Settings], Dispatcher]


class LazyDispatcher:
    """A dispatcher built on first use, so that reading commands never touch the broker."""

    def __init__(self, settings: Settings, factory: DispatcherFactory) -> None:
        self._settings = settings
        self._factory = factory
        self._built: Dispatcher | None = None

    @property
    def built(self) -> Dispatcher:
        if self._built is None:
            self._built = self._factory(self._settings)
        return self._built

    def kick(self, db: Database, settings: Settings) -> int:
        return self.built.kick(db, settings)

    def queue_depths(self) -> dict[str, int | None]:
        return self.built.queue_depths()

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        return self.built.agent_problem(name, agent_classes)


@dataclass(frozen=True)
class AgentRule:
    """Which agents a ticket or a repository may name: what the workers run, a class only when an admin listed it."""

    dispatcher: Dispatcher
    classes: Sequence[str] = ()

    def problem(self, name: str) -> str | None:
        """Why the agent called name may not run (one line), or None when it may."""
        return self.dispatcher.agent_problem(name, self.classes)
