"""The Redis broker's queue depths, read with LLEN without loading Celery or kombu (for `fleet status`)."""

from __future__ import annotations

from workers.constants import QUEUES

# kombu's Redis transport keeps a queue as one list per priority step: the queue's name for the first step, the
# name, PRIORITY_SEP and the step for the others (kombu.transport.redis.Channel: sep, priority_steps).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
SCHEMES = ("redis://", "rediss://")


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


class BrokerUnreachable(Exception):
    """The Redis broker did not answer; the message says why (never its password: redis-py names host and port)."""


def depths(url: str) -> dict[str, int | None]:
    """Messages waiting per queue; BrokerUnreachable when the broker does not answer, so that `fleet status` says
    why instead of showing no count."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                for key in queue_keys(queue):
                    pipe.llen(key)
            counts = iter(pipe.execute())
    except redis.RedisError as exc:
        raise BrokerUnreachable(f"the broker does not answer ({exc})") from None
    finally:
        client.close()
    return {queue: sum(next(counts) for _ in PRIORITY_STEPS) for queue in QUEUES}
