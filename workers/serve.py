"""Run a Celery worker in this process: `fleet up` (embedded, optionally until idle) and `fleet worker` (team)."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import celery.signals
import celery.worker.state
from celery.exceptions import SecurityWarning

from db import queries
from db.engine import Database
from system.rlimits import more_descriptors
from system.settings import Settings
from workers.celery_app import ask_worker_to_stop, create_app, transport_for
from workers.constants import QUEUES
from workers.pipeline.agent_step import hand_over_kept
from workers.queue import Dispatcher
from workers.reconciler import Pass, ReconcilerThread, reconcile
from workers.runtime import LeaseBook, WorkerRuntime
from workers.tasks import register_tasks

log = logging.getLogger(__name__)
IDLE_CHECK_SECONDS = 0.1
IDLE_JOIN_SECONDS = 5.0  # for the idle check's database read in flight when the worker stops
# Celery threads beyond the agent slots: they only hand verifications to the runtime's own budget, so a
# verification message never waits for an agent to end before it is taken.
HANDOFF_THREADS = 2


def _grace_on_shutdown(runtime: WorkerRuntime, grace: float) -> Callable[..., None]:
    """On Celery's warm shutdown (SIGTERM), no new work is taken; after grace seconds what still runs goes back."""

    def started(**_: Any) -> None:
        runtime.stopping.set()
        log.warning("stopping: no new work; running attempts have %gs to finish, then go back in line", grace)
        timer = threading.Timer(grace, runtime.hand_back)
        timer.daemon = True
        timer.start()

    return started


def _broker_client_name(settings: Settings, until_idle: bool) -> str:
    """The name a worker that stops itself gives its Redis broker connections, to end its own wait in flight when it
    stops; "" for none (an embedded broker, or one that refuses names: workers/redis_transport.py)."""
    if settings.embedded or not until_idle or transport_for(settings.broker_url) is None:
        return ""
    from workers.redis_transport import client_name, nameable

    return client_name() if nameable(settings.broker_url) else ""


def _stop_when_idle(db: Database, stopped: threading.Event, held: LeaseBook, broker_url: str = "") -> None:
    """Stop the worker once no attempt is open anywhere; while it holds one itself, the database is not asked.

    The database is asked as soon as this process's last attempt ends, then every IDLE_CHECK_SECONDS."""
    while not stopped.is_set():
        if not held.wait_until_none_held(IDLE_CHECK_SECONDS):
            continue
        with db.reading() as conn:
            if queries.count_open_attempts(conn) == 0 and queries.count_live_entries(conn) == 0:
                ask_worker_to_stop(broker_url)
                return
        stopped.wait(IDLE_CHECK_SECONDS)


def serve(
    settings: Settings,
    db: Database,
    concurrency: int,
    queues: Sequence[str] = QUEUES,
    until_idle: bool = False,
    logfile: str | None = None,
    loglevel: str = "WARNING",
    passes: Sequence[Pass] = (),
) -> int:
    """Consume queues with `concurrency` slots until stopped (or, with until_idle, until no work is left).

    Celery's logging goes to logfile when one is given (the command line shows its own progress instead)."""
    if settings.embedded:  # one user's own machine: Celery's advice against running as root is noise here
        warnings.filterwarnings("ignore", category=SecurityWarning)
    celery.worker.state.should_stop = None  # a previous serve() in this process may have set it
    more_descriptors()
    named = _broker_client_name(settings, until_idle)
    app = create_app(settings, named)
    dispatcher = Dispatcher(app)
    runtime = WorkerRuntime(settings, db, dispatcher, slots=concurrency, queues=",".join(queues))
    register_tasks(app, runtime)
    runtime.start()
    # A killed embedded `fleet up` took its prefetched messages with it: send every waiting attempt again.
    reconcile(db, dispatcher, settings, 0.0 if settings.embedded else settings.redispatch_seconds)
    reconciler = ReconcilerThread(db, dispatcher, settings, passes, before=lambda: hand_over_kept(runtime))
    reconciler.start()
    on_shutdown = _grace_on_shutdown(runtime, settings.shutdown_grace_seconds)
    celery.signals.worker_shutting_down.connect(on_shutdown, weak=False)
    stopped = threading.Event()
    idle_check = threading.Thread(
        target=_stop_when_idle, args=(db, stopped, runtime.leases, settings.broker_url if named else ""), daemon=True
    )
    if until_idle:
        idle_check.start()
    worker = app.Worker(
        pool_cls="threads",
        concurrency=concurrency + HANDOFF_THREADS,
        queues=list(queues),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=loglevel,
        logfile=logfile,
        hostname=f"{runtime.worker_id.replace(':', '-')}@fleet",
        quiet=True,
    )
    try:
        worker.start()
    finally:
        celery.signals.worker_shutting_down.disconnect(on_shutdown)
        stopped.set()
        if idle_check.is_alive():  # else it could stop the next serve() of this process
            idle_check.join(timeout=IDLE_CHECK_SECONDS + IDLE_JOIN_SECONDS)
        reconciler.stop()
        runtime.stop()
    return int(worker.exitcode or 0)
