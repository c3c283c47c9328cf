"""What every request needs, built once by create_app: settings, database, dispatcher, session key."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from db.engine import Database
from orchestrator.dispatch import AgentRule, Dispatcher
from orchestrator.web.shared import SharedAnswers
from system.settings import Settings

SESSION_KEY_FILE = "web-session.key"


def load_session_key(home: Path) -> bytes:
    """The key that signs the CSRF tokens of sessions: FLEET_HOME/web-session.key, made (mode 0600) on first use.

    Sessions live in the database; web servers sharing it take each other's forms only when they share this key too.
    """
    path = home.resolve() / SESSION_KEY_FILE
    if not path.exists():
        home.resolve().mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


@dataclass
class WebState:
    """Settings, database and the dispatcher (built on first use: the broker is only touched when something is sent)."""

    settings: Settings
    db: Database
    session_key: bytes
    dispatcher: Dispatcher
    sse_seconds: float = 300.0
    poll_seconds: float = 1.0
    max_body_bytes: int = 1_000_000
    answers: SharedAnswers = field(default_factory=SharedAnswers)  # what the live streams read, shared

    @property
    def agents(self) -> AgentRule:
        """The agents tickets and repositories may name."""
        return AgentRule(self.dispatcher, self.settings.agent_classes)


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.fleet
    return state
