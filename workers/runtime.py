"""What one worker process holds: its leases, their heartbeat, its worktree pools and its dispatcher."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from db import queries
from db.engine import Database, log_failure
from db.models import utcnow
from system.cancel import Cancellation
from system.files import remove_tree
from system.mirror import ensure_mirror
from system.orphans import end_orphaned_sandboxes
from system.rlimits import limit_commands_files
from system.sandbox import look_through_toolchains
from system.settings import Settings
from system.tmpfs import limit_sandbox_tmpfs
from verification.envcache import EnvCache
from verification.environment import PortAllocator
from workers.attempt_folders import AttemptFolders
from workers.constants import AGENT_QUEUE, VERIFY_QUEUE
from workers.egress import EgressProxy
from workers.gateway.server import ModelGateway
from workers.group_writer import GroupWriter
from workers.journal import OutcomeJournal
from workers.queue import Dispatcher
from workers.refills import RefillTurns
from workers.transcripts import LiveTranscripts
from workers.worktree import WorktreePool

log = logging.getLogger(__name__)
CANCEL_CHECK_SECONDS = 1.0
CLOSE_SECONDS = 30.0  # the most a stop waits for the gateway's start beside the worker's own
# A commit seen in a mirror is trusted that long before git is asked again (a gc may prune unreachable ones).
MIRROR_CHECK_SECONDS = 300.0
MIRROR_CHECKS_KEPT = 1024
BASELINES_KEPT = 256
K = TypeVar("K")
T = TypeVar("T")
V = TypeVar("V")
Q = TypeVar("Q")
A = TypeVar("A")


class Recent(Generic[K, V]):
    """A thread-safe map that keeps only the `size` entries stored last."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class KeyedLocks:
    """One lock per key while someone holds or waits for it, forgotten when the last leaves: it never grows."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        lock = self._enter(key)
        try:
            with lock:
                yield
        finally:
            self._leave(key)

    def _enter(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            return lock

    def _leave(self, key: str) -> None:
        with self._guard:
            lock, users = self._locks.pop(key)
            if users > 1:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


@dataclass
class Held:
    attempt_id: int
    cancel: threading.Event = field(default_factory=Cancellation)  # its commands' waits sleep on it


class LeaseBook:
    """The attempts this process holds; one heartbeat thread renews them all and relays cancellation."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._dropped = threading.Condition(self._lock)
        self._all_cancelled = False

    def hold(self, token: str, attempt_id: int) -> threading.Event:
        """The attempt's cancel flag; already set once cancel_all() was called (a worker handing its work back)."""
        with self._lock:
            held = self._held[token] = Held(attempt_id)
            if self._all_cancelled:
                held.cancel.set()
            return held.cancel

    def cancel_all(self) -> None:
        """Cancel every attempt held now and every attempt held from now on."""
        with self._lock:
            self._all_cancelled = True
            for held in self._held.values():
                held.cancel.set()

    def drop(self, token: str) -> None:
        with self._dropped:
            self._held.pop(token, None)
            if not self._held:  # only the last drop can end a wait: the others would wake the idle check for nothing
                self._dropped.notify_all()

    def wait_until_none_held(self, timeout: float) -> bool:
        """True once this process holds no attempt (at once if it holds none), False after timeout seconds."""
        with self._dropped:
            return self._dropped.wait_for(lambda: not self._held, timeout)

    def snapshot(self) -> dict[str, Held]:
        with self._lock:
            return dict(self._held)

    def __len__(self) -> int:
        return len(self._held)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("a verification failed outside its attempt: %r", exc)


class WorkerRuntime:
    """Shared by every task this process runs."""

    def __init__(self, settings: Settings, db: Database, dispatcher: Dispatcher, slots: int, queues: str) -> None:
        self.settings, self.db, self.dispatcher = settings, db, dispatcher
        limit_commands_files(settings.max_file_mb * 2**20)  # every agent, setup and test run this process starts
        limit_sandbox_tmpfs(settings.sandbox_tmp_mb * 2**20)  # and the /tmp and /dev/shm of each of their sandboxes
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.slots, self.queues = slots, queues
        self.leases = LeaseBook()
        self.journal = OutcomeJournal(settings.home.resolve() / "outcomes")
        self.attempt_folders = AttemptFolders(settings.attempts_dir)
        # Set when the worker is asked to stop: its slots take no new attempt.
        self.stopping = threading.Event()
        # Set when a stopping worker's grace period is over: its running attempts go back in line, with no verdict.
        self.handing_back = threading.Event()
        self.handed_back: list[int] = []  # the attempts it put back in line so (list.append is atomic)
        self.ports = PortAllocator(
            settings.ports_dir, settings.port_first, settings.port_block_size, settings.port_blocks
        )
        self.env_cache = EnvCache(settings.env_cache_dir, settings.env_cache_bytes)
        self.egress = EgressProxy()
        self.gateway = ModelGateway()
        self._egress_root: Path | None = None
        self._pools: dict[tuple[str, str], WorktreePool] = {}
        self._mirrors_dir = settings.mirrors_dir
        self._mirror_checks: Recent[tuple[str, str, str], tuple[Path, float]] = Recent(MIRROR_CHECKS_KEPT)
        self._baselines: Recent[str, tuple[dict[str, Any], int]] = Recent(BASELINES_KEPT)
        self._pools_lock = threading.Lock()
        self._baseline_locks = KeyedLocks()
        # Verifications run here, not in the Celery slot that received them: an agent slot refills as soon as its
        # agent ends, whatever verification is doing, and the CPU-bound test runs get a budget sized to the cores.
        self._verifier = ThreadPoolExecutor(settings.verify_slots, thread_name_prefix="fleet-verify")
        self.refills = RefillTurns(settings.refill_turns)
        self.transcripts = LiveTranscripts(db, settings.transcript_flush_seconds, settings.transcript_limit_bytes)
        self._group_writers: dict[str, GroupWriter[Any, Any]] = {}
        self._group_writers_lock = threading.Lock()
        self._stopped = threading.Event()
        self._heart = threading.Thread(target=self._heartbeat_loop, name="fleet-heartbeat", daemon=True)
        self.warming = threading.Thread(target=self._warm_up, name="fleet-warm-up", daemon=True)

    def egress_socket(self, attempt_id: int | str) -> Path:
        """Where the attempt's egress gate listens (its agent's; `12-setup-<token>` names one of attempt 12's
        setups): a short path (a Unix socket's is at most 107 bytes) in a folder of this process's own, 0700, that
        only that sandbox gets bound in."""
        if self._egress_root is None:
            self._egress_root = Path(tempfile.mkdtemp(prefix="fleet-egress-"))
        return self._egress_root / str(attempt_id) / "proxy.sock"

    def new_lease(self) -> queries.Lease:
        return queries.Lease(owner=self.worker_id, token=uuid.uuid4().hex, seconds=self.settings.lease_seconds)

    def mirror(self, repo_key: str, source: str, sha: str) -> Path:
        """ensure_mirror(), skipped while the same commit was found in the same mirror recently."""
        key = (repo_key, source, sha)
        known = self._mirror_checks.get(key)
        if known is not None and time.monotonic() - known[1] < MIRROR_CHECK_SECONDS and (known[0] / "HEAD").is_file():
            return known[0]
        path = ensure_mirror(self._mirrors_dir, repo_key, source, sha)
        self._mirror_checks.put(key, (path, time.monotonic()))
        return path

    def pool(self, repo_key: str, kind: str, mirror: Path) -> WorktreePool:
        """The worktree pool of one repository for one kind of work (agent or verify)."""
        with self._pools_lock:
            key = (repo_key, kind)
            if key not in self._pools:
                root = self.settings.worktrees_dir / repo_key / kind
                self._pools[key] = WorktreePool(root, mirror, self.settings.worktree_pool_size or None)
            return self._pools[key]

    def group_writer(self, name: str, make: Callable[[], GroupWriter[Q, A]]) -> GroupWriter[Q, A]:
        """The process's one group writer of that name, made by make() on first use."""
        with self._group_writers_lock:
            if name not in self._group_writers:
                self._group_writers[name] = make()
            return self._group_writers[name]

    def baseline_lock(self, key: str) -> AbstractContextManager[None]:
        """Held while one baseline is looked up or run, so a process runs each baseline once."""
        return self._baseline_locks.hold(key)

    def known_baseline(self, key: str) -> tuple[dict[str, Any], int] | None:
        """A baseline this process stored or read before: (its result as JSON, its id). Baselines never change."""
        return self._baselines.get(key)

    def remember_baseline(self, key: str, result: dict[str, Any], baseline_id: int) -> None:
        self._baselines.put(key, (result, baseline_id))

    def discard_attempt_dir(self, attempt_id: int) -> None:
        """The prompt file, reports and journal entries are in the database now; the folders must not grow. When
        every command of the attempt ran sandboxed, the folder is kept emptied for a next attempt."""
        self.attempt_folders.discard(attempt_id)
        self.journal.drop(attempt_id)

    def hand_back(self) -> None:
        """Stop every attempt this process runs and hand it back (the grace period after SIGTERM is over)."""
        self.handing_back.set()
        self.leases.cancel_all()

    @property
    def verifies_here(self) -> bool:
        """True when this process takes verifications: its agents' diffs are verified here, with no message."""
        return VERIFY_QUEUE in self.queues.split(",")

    def verify_later(self, step: Callable[[WorkerRuntime, T], None], work: T) -> None:
        """Queue a verification on this process's verification budget; the calling slot returns at once.

        A verification still waiting here when the process stops is still `verify_queued` in the database: the
        reconciler sends it again."""
        try:
            self._verifier.submit(step, self, work).add_done_callback(_log_failure)
        except RuntimeError:  # the process is stopping and its verification budget is closed
            log.warning("a verification was left for the reconciler to send again: this worker is stopping")

    # --- heartbeat ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._beat(stopped=False)
        self._heart.start()
        self.transcripts.start()
        self.warming.start()

    def _warm_up(self) -> None:
        """Beside the worker's own start, what the first wave's agents would each wait for the first one to do: start
        the model gateway's listener, and look through the toolchains on PATH that sandboxes show (most of a second
        for a ~/.pyenv). A failure is logged, and left for the first attempt to meet (its gate starts the listener
        again; its sandbox looks through the toolchains) and record."""
        if AGENT_QUEUE in self.queues.split(","):
            try:
                self.gateway.start()
            except Exception as exc:
                log.warning("the model gateway did not start with the worker; the first attempt starts it: %r", exc)
        try:
            look_through_toolchains()  # started by `fleet up` and `fleet worker` already, when they run this process
        except Exception as exc:
            log.warning("the toolchains were not looked through as the worker started; the first sandbox does: %r", exc)
        try:
            if ended := end_orphaned_sandboxes(self.settings.home):
                log.warning("ended %d sandbox process(es) that a worker which died left waiting for ever", ended)
        except OSError as exc:
            log.warning("the sandboxes dead workers left were not looked for: %r", exc)

    def stop(self) -> None:
        self._verifier.shutdown(wait=True, cancel_futures=True)  # the ones not started are sent again later
        self.transcripts.stop()
        self._stopped.set()
        self._heart.join(timeout=5.0)
        self._close_servers()
        try:
            self._beat(stopped=True)
        except Exception:
            log.exception("could not record the worker's stop")

    def _close_servers(self) -> None:
        """Stop the model gateway's listener and the egress proxy, and remove the egress sockets' folder: a stopped
        worker leaves no port open and nothing in /tmp (a later attempt in this process starts them anew)."""
        if self.warming.is_alive():
            self.warming.join(timeout=CLOSE_SECONDS)  # a listener starting now would be left open
        for server in (self.gateway, self.egress):
            try:
                server.close()
            except Exception:
                log.exception("could not close the worker's %s", type(server).__name__)
        if self._egress_root is not None:
            with suppress(OSError):
                remove_tree(self._egress_root)
            self._egress_root = None

    def _beat(self, stopped: bool) -> None:
        with self.db.session() as s:
            queries.beat(
                s,
                self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                slots=self.slots if AGENT_QUEUE in self.queues.split(",") else 0,  # a verify-only worker runs no agent
                busy=len(self.leases),
                queues=self.queues,
                stopped_at=utcnow() if stopped else None,
            )

    def _heartbeat_loop(self) -> None:
        ticks_per_beat = max(1, round(self.settings.heartbeat_seconds / CANCEL_CHECK_SECONDS))
        tick = 0
        while not self._stopped.wait(min(CANCEL_CHECK_SECONDS, self.settings.heartbeat_seconds)):
            tick += 1
            try:
                self._relay_cancels()
                if tick % ticks_per_beat == 0:
                    self._renew()
            except Exception as exc:  # the leases are renewed when the database answers again
                log_failure(log, "heartbeat", exc)

    def _relay_cancels(self) -> None:
        held = self.leases.snapshot()
        if not held:
            return
        with self.db.reading() as conn:
            cancelled = queries.cancel_requested(conn, [h.attempt_id for h in held.values()])
        for h in held.values():
            if h.attempt_id in cancelled:
                h.cancel.set()

    def _renew(self) -> None:
        held = self.leases.snapshot()
        with self.db.session() as s:
            still = queries.renew_leases(s, self.worker_id, held, self.settings.lease_seconds)
        current = self.leases.snapshot()  # an attempt that concluded meanwhile released its lease itself
        for token, h in held.items():
            if token not in still and token in current:  # another worker took the attempt over: its writes are refused
                log.warning("lost the lease on attempt %s; stopping it", h.attempt_id)
                h.cancel.set()
        self._beat(stopped=False)
