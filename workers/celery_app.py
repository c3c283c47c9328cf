"""The Celery app, built from settings; Celery's concepts stay in this module and tasks.py."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import celery.worker.consumer
import celery.worker.state
from celery import Celery
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps

from system.settings import Settings
from workers.constants import (
    AGENT_QUEUE,
    MERGE_BUILD_TASK,
    MERGE_PASS_TASK,
    RUN_AGENT_TASK,
    VERIFY_QUEUE,
    VERIFY_TASK,
    VISIBILITY_TIMEOUT_SECONDS,
)

log = logging.getLogger(__name__)
EMBEDDED_POLL_SECONDS = 0.1  # how soon the embedded worker sees a message another process put in its folder
EMBEDDED_SCHEME = "fleet-embedded"


class Wakeups:
    """Rung when this process puts a message in the embedded broker's folder or asks its worker loop to stop; a
    loop waits past the rings it has seen (no loop's wake-up is spent by another's)."""

    def __init__(self) -> None:
        self._rung = threading.Condition()
        self._count = 0

    def ring(self) -> None:
        with self._rung:
            self._count += 1
            self._rung.notify_all()

    def count(self) -> int:
        with self._rung:
            return self._count

    def wait_past(self, seen: int, timeout: float) -> None:
        with self._rung:
            self._rung.wait_for(lambda: self._count != seen, timeout)


_embedded_wakeups = Wakeups()


def ask_worker_to_stop(broker_url: str = "", code: int = 0) -> None:
    """Celery's warm shutdown, seen at once by this process's worker loop: the embedded one is woken, a Redis
    one's wait for a message in flight is ended (broker_url: the worker's Redis broker, whose connections it named
    redis_transport.client_name()); code is the worker's exit code."""
    celery.worker.state.should_stop = code  # Celery's own flag, as its SIGTERM handler sets it
    _embedded_wakeups.ring()
    if transport_for(broker_url) is not None:
        from workers.redis_transport import end_waits

        end_waits(broker_url)


def _stop_asked() -> bool:
    return celery.worker.state.should_stop is not None and celery.worker.state.should_stop is not False


class EmbeddedChannel(filesystem.Channel):  # type: ignore[misc]
    """Writes each message under a temporary name and renames it, so no consumer ever reads a half-written file."""

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{int(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"  # does not end in .<queue>.msg: consumers skip it
        with open(partial, "wb") as handle:
            handle.write(dumps(payload).encode())
        os.replace(partial, final)
        _embedded_wakeups.ring()


class EmbeddedTransport(filesystem.Transport):  # type: ignore[misc]
    """kombu's filesystem transport, whose worker loop is woken at once by what this process does.

    Celery's loop for polling transports waits up to two seconds per cycle before it looks at its stop flag, and
    kombu's looks at the queues every polling interval. Here each cycle looks once; when the queues are empty it
    waits until this process puts a message (a verification handed to its own worker) or asks the loop to stop,
    at most EMBEDDED_POLL_SECONDS (another process's message).
    """

    Channel = EmbeddedChannel

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        seen = _embedded_wakeups.count()  # before the look: what is put after it ends the wait
        try:
            return super().drain_events(connection, timeout=0, **kwargs)
        except TimeoutError:  # socket.timeout: nothing was delivered
            if not _stop_asked():  # Celery's loop looks once more after it has seen its stop flag
                _embedded_wakeups.wait_past(seen, EMBEDDED_POLL_SECONDS)
            raise


# A worker's consumer tries the broker again every second or two while it is away (kombu's default backoff reaches
# ten seconds after half a minute), and never gives up: the database keeps the work; the broker only rings.
RECONNECT_PAUSES = {"interval_start": 1.0, "interval_step": 0.5, "interval_max": 2.0}


class Consumer(celery.worker.consumer.Consumer):  # type: ignore[misc]
    """Celery's consumer, reconnecting to a broker that came back within two seconds."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_PAUSES)
        return super().ensure_connected(conn)


def _embedded_broker(folder: Path) -> tuple[str, dict[str, Any]]:
    """kombu's filesystem transport: no server; a message lost with a killed consumer is re-sent by the reconciler.

    Every folder it uses is named, under the broker folder: left out, `control_folder` (the exchange table) is
    `control` in the folder Fleet was run from.
    """
    queue, processed, control = folder / "queue", folder / "processed", folder / "control"
    for path in (queue, processed, control):
        path.mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        "control_folder": str(control),
        "store_processed": False,
        "polling_interval": EMBEDDED_POLL_SECONDS,
    }
    TRANSPORT_ALIASES.setdefault(EMBEDDED_SCHEME, f"{__name__}:EmbeddedTransport")
    return f"{EMBEDDED_SCHEME}://localhost//", options


def broker_for(settings: Settings, client_name: str = "") -> tuple[str, dict[str, Any]]:
    """The broker's URL and kombu's options; client_name: what a Redis broker's connections call themselves."""
    if settings.embedded:
        return _embedded_broker(settings.broker_dir)
    options: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
    if client_name:
        options["client_name"] = client_name
    return settings.broker_url, options


def transport_for(url: str) -> str | None:
    """Fleet's own transport class for a plain redis:// broker, else None (the URL's scheme chooses); named, so
    that the embedded worker never imports Redis's client."""
    return "workers.redis_transport:RedisTransport" if url.startswith("redis://") else None


def create_app(settings: Settings, client_name: str = "") -> Celery:
    """A Celery app for settings, configured for agent runs of an hour and more (client_name: see broker_for)."""
    url, transport_options = broker_for(settings, client_name)
    app = Celery("fleet", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_transport=transport_for(url),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker as long as it takes
        worker_consumer=f"{__name__}:Consumer",
        task_ignore_result=True,
        task_acks_late=False,  # the database is the source of truth; a lost message is re-sent from it
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=not settings.embedded,
        task_send_sent_event=not settings.embedded,
        task_routes={
            RUN_AGENT_TASK: {"queue": AGENT_QUEUE},
            **{name: {"queue": VERIFY_QUEUE} for name in (VERIFY_TASK, MERGE_BUILD_TASK, MERGE_PASS_TASK)},
        },
        task_default_queue=AGENT_QUEUE,
        task_serializer="json",
        accept_content=["json"],
    )
    return app
