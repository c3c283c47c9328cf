"""A stopping worker starts no agent: not for an attempt claimed as it hands its work back, nor for a message it
takes after Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.models import Attempt
from tests.conftest import in_process_worker
from tests.core.conftest import Fleet
from tests.core.test_slot_refill import _queued
from workers.constants import AGENT_QUEUE
from workers.pipeline import run_agent_attempt


def test_an_attempt_claimed_while_the_worker_hands_back_goes_back_in_line_without_its_agent(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = tmp_path / "agent-started"
    _queued(embedded, [f"touch {started}"])
    runtime = in_process_worker(embedded, monkeypatch, AGENT_QUEUE)
    runtime.start()
    try:
        runtime.stopping.set()
        runtime.hand_back()  # the grace period is over: every attempt held from now on is cancelled
        with embedded.db().session() as s:
            attempt_id = s.query(Attempt).one().id
        run_agent_attempt(runtime, attempt_id)  # a message taken at that very moment
    finally:
        runtime.stop()
    with embedded.db().session() as s:
        attempt = s.query(Attempt).one()
        assert (attempt.status, attempt.lease_token) == ("queued", None)
    assert not started.exists()
    worktrees = runtime.settings.worktrees_dir
    assert not worktrees.exists() or list(worktrees.rglob("*")) == []  # nothing was set up for it


def test_an_agent_message_delivered_to_a_stopping_worker_leaves_its_attempt_waiting(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A message Celery took as the worker started, run after Ctrl-C: the stop says no new work, so none starts."""
    started = tmp_path / "agent-started"
    _queued(embedded, [f"touch {started}"])
    runtime = in_process_worker(embedded, monkeypatch, AGENT_QUEUE)
    runtime.start()
    try:
        runtime.stopping.set()  # the first Ctrl-C: running attempts may finish, none starts
        with embedded.db().session() as s:
            attempt_id = s.query(Attempt).one().id
        run_agent_attempt(runtime, attempt_id)
    finally:
        runtime.stop()
    with embedded.db().session() as s:
        attempt = s.query(Attempt).one()
        assert (attempt.status, attempt.lease_token, attempt.agent_runs) == ("queued", None, 0)
    assert not started.exists()
