"""Run a Celery worker in this process: `fleet up` (embedded, optionally until idle) and `fleet worker` (team)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import celery.platforms
import celery.signals
import celery.worker.state
from celery.exceptions import SecurityWarning

from db import queries
from db.engine import Database
from system.credentials import shown_url
from system.rlimits import more_descriptors
from system.settings import Settings
from workers.broker_wait import BrokerWait
from workers.celery_app import ask_worker_to_stop, create_app, transport_for
from workers.constants import INTERRUPTED, QUEUES
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
AS_ROOT = (
    "note: this worker runs as root; a worker host is better served by a user of its own "
    "(Fleet's Dockerfile runs it as `fleet`)"
)


@dataclass(frozen=True)
class Served:
    """How a worker ended: its exit code, and how many running attempts it put back in line as it stopped."""

    exit_code: int
    handed_back: int
    gave_up: str = ""  # why a worker that stops when idle gave up waiting (a broker that never answered)
    left_waiting: tuple[str, ...] = ()  # merge entries a worker that stopped when idle did not wait for, and why


class Stop:
    """A worker asked to stop (Ctrl-C, SIGTERM): the first time, no new work is taken and running attempts get the
    grace period to finish, then go back in line; the second time they go back in line now. Every request comes
    from a signal handler, on the main thread."""

    def __init__(self, runtime: WorkerRuntime, grace: float, announce: Callable[[str], None]) -> None:
        self.runtime, self.grace, self.announce = runtime, grace, announce
        self.requests = 0  # counted first: a second Ctrl-C may come while the first one's line is printed
        self._timer: threading.Timer | None = None

    def request(self, *_: Any, **__: Any) -> None:
        self.requests += 1
        if self.requests == 1:
            self._begin()
        else:
            self._hand_back("stopping the running attempts now")

    def _begin(self) -> None:
        self.runtime.stopping.set()
        if not self.runtime.leases:  # stopped as it started, say: the slots take nothing from now on
            self._say("stopping: no attempt was running; the waiting ones stay in line")
        else:
            self._say(
                f"stopping: no new work; running attempts have {self.grace:g}s (FLEET_SHUTDOWN_GRACE_SECONDS) to "
                "finish, then go back in line; Ctrl-C again stops them now"
            )
        # Also with none running: a claim under way as the stop came still gets its grace period, and no more.
        self._timer = threading.Timer(self.grace, self._hand_back, ("the grace period is over",))
        self._timer.daemon = True
        self._timer.start()

    def _hand_back(self, why: str) -> None:
        if not self.runtime.handing_back.is_set():
            self._say(f"{why}: they go back in line, no verdict")
        self.runtime.hand_back()

    def _say(self, line: str) -> None:
        if log.hasHandlers():  # else, before Celery set its log up, Python's last resort would print it a second time
            log.warning("%s", line)
        with contextlib.suppress(OSError, ValueError):  # a closed or broken terminal must not stop the stop
            self.announce(line)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _interrupts(stop: Stop, broker_url: str) -> Callable[..., None]:
    """From the worker's start on, Ctrl-C does what Stop says in place of what Celery does: before the worker is
    ready, Python's KeyboardInterrupt would end serve() between two steps of its start (no line said, its threads
    and its worker row left as they were), and Celery's handler a start under way only once its first messages'
    agents ended; its second Ctrl-C is a cold shutdown, which a thread pool cannot carry out (it cannot cancel a
    task), and the process exits with its attempts still `running` in the database until their leases lapse."""

    def interrupted(*_: Any) -> None:
        ask_worker_to_stop(broker_url, INTERRUPTED)
        stop.request()

    def take_interrupts(**_: Any) -> None:
        celery.platforms.signals["SIGINT"] = interrupted

    return take_interrupts


def _worker_class(app: Any, take_interrupts: Callable[[], None]) -> Any:
    """The app's Worker, taking Ctrl-C back as soon as Celery has installed its own handlers (as it starts)."""

    class Worker(app.Worker):  # type: ignore[misc,name-defined]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            take_interrupts()

    return Worker


def _silent(line: str) -> None:
    """An announce that shows nothing (the log has the line)."""


def _broker_client_name(settings: Settings, until_idle: bool) -> str:
    """The name a worker that stops itself gives its Redis broker connections, to end its own wait in flight when it
    stops; "" for none (an embedded broker, or one that refuses names: workers/redis_transport.py)."""
    if settings.embedded or not until_idle or transport_for(settings.broker_url) is None:
        return ""
    from workers.redis_transport import client_name, nameable

    return client_name() if nameable(settings.broker_url) else ""


def _stop_when_idle(db: Database, stopped: threading.Event, held: LeaseBook, broker_url: str = "") -> None:
    """Stop the worker once no attempt is open anywhere and no merge entry can land without a person (its target
    refused the push: queries.count_merge_work); while it holds an attempt itself, the database is not asked.

    The database is asked as soon as this process's last attempt ends, then every IDLE_CHECK_SECONDS."""
    while not stopped.is_set():
        if not held.wait_until_none_held(IDLE_CHECK_SECONDS):
            continue
        with db.reading() as conn:
            if queries.count_open_attempts(conn) == 0 and queries.count_merge_work(conn) == 0:
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
    announce: Callable[[str], None] = _silent,
) -> Served:
    """Consume queues with `concurrency` slots until stopped (or, with until_idle, until no work is left).

    Celery's logging goes to logfile when one is given (the command line shows its own progress instead); announce
    shows what a stop does (the command line prints it)."""
    # Celery's advice against root names a --uid option `fleet worker` has not; a team's worker is told in one line.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    if not settings.embedded and os.geteuid() == 0:
        announce(AS_ROOT)
    celery.worker.state.should_stop = None  # a previous serve() in this process may have set it
    more_descriptors()
    named = _broker_client_name(settings, until_idle)
    app = create_app(settings, named)
    dispatcher = Dispatcher(app)
    runtime = WorkerRuntime(settings, db, dispatcher, slots=concurrency, queues=",".join(queues))
    stop = Stop(runtime, settings.shutdown_grace_seconds, announce)
    take_interrupts = _interrupts(stop, settings.broker_url if named else "")
    take_interrupts()
    register_tasks(app, runtime)
    runtime.start()
    # A killed embedded `fleet up` took its prefetched messages with it: send every waiting attempt again.
    reconcile(db, dispatcher, settings, 0.0 if settings.embedded else settings.redispatch_seconds)
    reconciler = ReconcilerThread(db, dispatcher, settings, passes, before=lambda: hand_over_kept(runtime))
    reconciler.start()
    celery.signals.worker_shutting_down.connect(stop.request, weak=False)  # SIGTERM, through Celery
    stopped = threading.Event()
    idle_check = threading.Thread(
        target=_stop_when_idle, args=(db, stopped, runtime.leases, settings.broker_url if named else ""), daemon=True
    )
    if until_idle:
        idle_check.start()
    shown = shown_url(settings.broker_url)
    broker = BrokerWait(
        app, shown, announce, settings.broker_wait_seconds if until_idle else None, runtime.leases.__len__
    )
    if not settings.embedded:
        threading.Thread(target=broker.watch, args=(stopped,), daemon=True, name="fleet-broker-wait").start()
    worker = _worker_class(app, take_interrupts)(
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
        celery.signals.worker_shutting_down.disconnect(stop.request)
        stop.close()
        stopped.set()
        if idle_check.is_alive():  # else it could stop the next serve() of this process
            idle_check.join(timeout=IDLE_CHECK_SECONDS + IDLE_JOIN_SECONDS)
        reconciler.stop()
        runtime.stop()
    waiting = refused_pushes(db) if until_idle else ()
    return Served(int(worker.exitcode or 0), len(runtime.handed_back), broker.gave_up, waiting)


def refused_pushes(db: Database) -> tuple[str, ...]:
    """One line per merge entry whose target refused its landing push, saying why: what a worker that stops when
    idle leaves in the queue (a plain `fleet up` tries each again every pass)."""
    with db.session() as s:
        return tuple(
            f"ticket {e.ticket_id} waits in the merge queue of {e.target}: {e.reason}; `fleet up` tries again, "
            f"`fleet merge eject {e.ticket_id}` takes it out"
            for e in queries.refused_entries(s)
        )
