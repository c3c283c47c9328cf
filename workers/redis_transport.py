"""kombu's Redis transport as Fleet uses it: a team's broker (workers/celery_app.py names it by its path)."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
REDIS_WAIT_SECONDS = 0.25
WAIT_END_SECONDS = 1.0  # end_waits gives up on a broker that does not answer in this time
_PATIENCE = {"socket_connect_timeout": WAIT_END_SECONDS, "socket_timeout": WAIT_END_SECONDS}
_PROCESS_TOKEN = uuid.uuid4().hex[:8]  # with the pid: no two processes' connections, on any host, share a name


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
    and later take a fraction of a second). A worker that stops itself ends its wait at once (end_waits)."""

    Channel = RedisChannel
    brpop_timeout = REDIS_WAIT_SECONDS  # type: ignore[assignment]  # kombu says int; Redis 6 waits fractions


def client_name() -> str:
    """The name this process's connections to the broker give themselves (CLIENT SETNAME), for end_waits."""
    return f"fleet-worker-{os.getpid()}-{_PROCESS_TOKEN}"


def nameable(url: str) -> bool:
    """Whether the broker at url lets a connection name itself: one that refuses CLIENT SETNAME (an ACL without
    `client|setname`, a proxy) would refuse every connection that asks, so a worker names none there."""
    import redis

    try:
        with redis.Redis.from_url(url, **_PATIENCE) as client:
            client.client_setname(client_name())
    except Exception as exc:  # refused, away, or a URL redis-py reads otherwise than kombu
        log.debug("the broker's connections go unnamed: %s", exc)
        return False
    return True


def end_waits(url: str) -> int:
    """End this process's waits for a message in flight on the broker at url (CLIENT UNBLOCK: each answers as if
    its time were up), so a stopping worker's loop closes its channel at once; how many. A broker that refuses
    CLIENT LIST or UNBLOCK, or does not answer within WAIT_END_SECONDS, costs the stop its quarter of a second."""
    import redis

    try:
        with redis.Redis.from_url(url, **_PATIENCE) as client:
            waiting = [entry["id"] for entry in client.client_list() if _waits_here(entry)]
            for client_id in waiting:
                client.client_unblock(int(client_id))
    except Exception as exc:  # as in nameable
        log.debug("the broker's waits were not ended: %s", exc)
        return 0
    return len(waiting)


def _waits_here(entry: dict[str, str]) -> bool:
    """A connection of this process blocked in BRPOP (`cmd` alone is the last command, blocked or not)."""
    return entry.get("name") == client_name() and entry.get("cmd") == "brpop" and "b" in entry.get("flags", "")
