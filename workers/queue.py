"""The doorbell: sends attempt ids to the right queue. The database, not the queue, holds the work."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Sequence

import kombu.exceptions
from celery import Celery

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from system.settings import Settings
from workers import agents, scheduler
from workers.constants import (
    AGENT_QUEUE,
    BROKER_CANARY,
    MERGE_BUILD_TASK,
    MERGE_PASS_TASK,
    QUEUES,
    RUN_AGENT_TASK,
    VERIFY_QUEUE,
    VERIFY_TASK,
)

log = logging.getLogger(__name__)
ROUTES = {
    AttemptStatus.QUEUED: (RUN_AGENT_TASK, AGENT_QUEUE),
    AttemptStatus.VERIFY_QUEUED: (VERIFY_TASK, VERIFY_QUEUE),
}
# A publish tries a little, then gives up: the attempt is marked sent in the database and is sent again from
# there once the broker answers (workers.reconciler), so a task never waits on a broker that is away.
SEND_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 0.5}


def broker_down(exc: BaseException) -> bool:
    """True for a broker that cannot be reached (refused, reset, timed out): the message waits, nothing failed."""
    unreachable: tuple[type[BaseException], ...] = (kombu.exceptions.OperationalError,)
    if (redis_errors := sys.modules.get("redis.exceptions")) is not None:  # loaded with a Redis broker, and only then
        unreachable += (redis_errors.ConnectionError, redis_errors.TimeoutError)
    return isinstance(exc, unreachable) or (
        isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError)
    )


class Dispatcher:
    """Sends (attempt id, waiting status) pairs as Celery messages; the control plane's orchestrator.dispatch seam."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.lost = threading.Event()  # a send found the broker away: what it held may be gone

    def send(self, attempts: Iterable[tuple[int, AttemptStatus]]) -> int:
        """Publish each pair; with the broker away, one warning line and the rest is left to the reconciler."""
        pairs, sent = list(attempts), 0
        if not pairs:
            return 0
        try:
            with self.app.producer_or_acquire() as producer:
                for attempt_id, status in pairs:
                    task, queue = ROUTES[status]
                    self.app.send_task(
                        task, args=[attempt_id], queue=queue, producer=producer, retry=True, retry_policy=SEND_RETRY
                    )
                    sent += 1
        except Exception as exc:
            if not broker_down(exc):
                raise
            self.lost.set()
            log.warning("broker unreachable (%s); %d attempt(s) are sent again when it answers", exc, len(pairs) - sent)
        return sent

    def broker_fresh(self) -> bool:
        """True once the broker answers after being away, or answers without Fleet's canary key (it restarted with
        no persistence, losing every message it held): then every waiting attempt must be sent again."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=0)
                client = getattr(conn.default_channel, "client", None)
                created = bool(client.set(BROKER_CANARY, "1", nx=True)) if client is not None else False
        except Exception as exc:
            if not broker_down(exc):
                raise
            self.lost.set()
            return False
        was_lost = self.lost.is_set()
        self.lost.clear()
        return created or was_lost

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
