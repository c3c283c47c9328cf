"""kombu's Redis transport as Fleet uses it: a team's broker (workers/celery_app.py names it by its path)."""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
REDIS_WAIT_SECONDS = 0.25


class RedisQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's Redis QoS, surviving a connection lost with messages reserved or being acknowledged (kombu 5.7).

    When the worker's connection drops, kombu closes the channel's pools before it restores the unacknowledged
    messages, and an acknowledgement queued before the drop runs on the closed channel: both fail with an
    AttributeError that Celery calls unrecoverable, and the worker exits. Nothing is lost by skipping them: the
    database re-sends every attempt no worker took (workers.reconciler), and a second delivery claims nothing.
    """

    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except AttributeError:
            return None

    def ack(self, delivery_tag: Any) -> None:
        try:
            super().ack(delivery_tag)
        except AttributeError:
            log.warning("a message's acknowledgement was lost with the broker connection")

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            log.warning("a message's rejection was lost with the broker connection")


class RedisChannel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = RedisQoS


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with RedisQoS; URLs are read as kombu's own redis:// ones.

    Its waits for a message (BRPOP) last a quarter of a second, not kombu's second: a stopping worker closes its
    channel only once the wait in flight has answered, so `fleet up --until-idle` exited up to a second late (Redis 6
    and later take a fraction of a second)."""

    Channel = RedisChannel
    brpop_timeout = REDIS_WAIT_SECONDS  # type: ignore[assignment]  # kombu says int; Redis 6 waits fractions
