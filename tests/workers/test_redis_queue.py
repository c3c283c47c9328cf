"""A Redis broker's depths, counted from its lists as `fleet status` shows them, match what Celery sent and counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu.transport import redis as kombu_redis

from system.settings import Settings
from workers.celery_app import create_app
from workers.constants import AGENT_QUEUE, RUN_AGENT_TASK, VERIFY_QUEUE
from workers.queue import ROUTES, Dispatcher
from workers.redis_queue import PRIORITY_SEP, PRIORITY_STEPS, BrokerUnreachable, depths


def test_the_lists_are_named_as_kombu_names_them() -> None:
    assert (PRIORITY_SEP, list(PRIORITY_STEPS)) == (kombu_redis.Channel.sep, kombu_redis.Channel.priority_steps)


def test_depths_count_every_message_sent_at_every_priority(redis_url: str, tmp_path: Path) -> None:
    assert depths(redis_url) == {AGENT_QUEUE: 0, VERIFY_QUEUE: 0}
    dispatcher = Dispatcher(create_app(Settings(home=tmp_path, broker_url=redis_url)))
    statuses = list(ROUTES)
    dispatcher.send([(1, statuses[0]), (2, statuses[0]), (3, statuses[1])])
    dispatcher.app.send_task(RUN_AGENT_TASK, args=[4], queue=AGENT_QUEUE, priority=5)  # a list of its own
    assert depths(redis_url) == {AGENT_QUEUE: 3, VERIFY_QUEUE: 1} == dispatcher.queue_depths()


def test_a_broker_that_does_not_answer_says_why() -> None:
    with pytest.raises(BrokerUnreachable, match=r"the broker does not answer \(Error 111 connecting to 127.0.0.1:9"):
        depths("redis://127.0.0.1:9/0")
