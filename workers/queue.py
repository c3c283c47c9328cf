"""The doorbell: sends attempt ids to the right queue. The database, not the queue, holds the work."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from celery import Celery

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from system.settings import Settings
from workers import agents, scheduler
from workers.constants import (
    AGENT_QUEUE,
    MERGE_BUILD_TASK,
    MERGE_PASS_TASK,
    QUEUES,
    RUN_AGENT_TASK,
    VERIFY_QUEUE,
    VERIFY_TASK,
)

ROUTES = {
    AttemptStatus.QUEUED: (RUN_AGENT_TASK, AGENT_QUEUE),
    AttemptStatus.VERIFY_QUEUED: (VERIFY_TASK, VERIFY_QUEUE),
}


class Dispatcher:
    """Sends (attempt id, waiting status) pairs as Celery messages; the control plane's orchestrator.dispatch seam."""

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

    def send_builds(self, entry_ids: Sequence[int]) -> int:
        """Merge queue builds to verify, by entry id, on the verify queue."""
        return self._send_each(MERGE_BUILD_TASK, entry_ids)

    def send_passes(self, repo_ids: Sequence[int]) -> int:
        """Merge queue passes to run, by repository id."""
        return self._send_each(MERGE_PASS_TASK, repo_ids)

    def _send_each(self, task: str, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        with self.app.producer_or_acquire() as producer:
            for one in ids:
                self.app.send_task(task, args=[one], queue=VERIFY_QUEUE, producer=producer)
        return len(ids)

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

    def kick(self, db: Database, settings: Settings) -> int:
        """Fill free worker slots with waiting attempts (one scheduler pass), and wake the merge queues."""
        with db.session() as s:
            queued = queries.queued_repos(s)
        self.send_passes(queued)
        return scheduler.schedule(db, self, settings)

    def agent_problem(self, name: str, agent_classes: Sequence[str]) -> str | None:
        """Why the workers would refuse the agent called name, or None when they can run it."""
        return agents.agent_problem(name, agent_classes)
