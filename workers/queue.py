"""The doorbell: sends attempt ids to the right queue. The database, not the queue, holds the work."""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery

from db.lifecycle import AttemptStatus
from workers.constants import AGENT_QUEUE, QUEUES, RUN_AGENT_TASK, VERIFY_QUEUE, VERIFY_TASK

ROUTES = {
    AttemptStatus.QUEUED: (RUN_AGENT_TASK, AGENT_QUEUE),
    AttemptStatus.VERIFY_QUEUED: (VERIFY_TASK, VERIFY_QUEUE),
}


class Dispatcher:
    """Sends (attempt id, waiting status) pairs as Celery messages."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, attempts: Iterable[tuple[int, AttemptStatus]]) -> int:
        sent = 0
        with self.app.producer_or_acquire() as producer:
            for attempt_id, status in attempts:
                task, queue = ROUTES[status]
                self.app.send_task(task, args=[attempt_id], queue=queue, producer=producer)
                sent += 1
        return sent

    def queue_depths(self) -> dict[str, int | None]:
        """Messages waiting per queue, or None where the broker cannot tell."""
        depths: dict[str, int | None] = {}
        with self.app.connection_for_write() as conn, conn.channel() as channel:
            for queue in QUEUES:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # a queue nobody declared yet, or a transport without counts
                    depths[queue] = None
        return depths
