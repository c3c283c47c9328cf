"""The embedded broker's depths, counted from its folder as `fleet status` shows them, match what was sent."""

from __future__ import annotations

from pathlib import Path

from system.settings import Settings
from workers.celery_app import create_app
from workers.constants import AGENT_QUEUE, VERIFY_QUEUE
from workers.embedded_queue import depths
from workers.queue import ROUTES, Dispatcher


def test_depths_count_the_messages_sent(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert depths(settings.broker_dir) == {AGENT_QUEUE: 0, VERIFY_QUEUE: 0}
    dispatcher = Dispatcher(create_app(settings))
    statuses = list(ROUTES)
    dispatcher.send([(1, statuses[0]), (2, statuses[0]), (3, statuses[1])])
    assert depths(settings.broker_dir) == {AGENT_QUEUE: 2, VERIFY_QUEUE: 1} == dispatcher.queue_depths()
