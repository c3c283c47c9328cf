"""Live transcripts: the running agents' output so far, stored for all of a worker's agents by one thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from db import queries
from db.engine import Database, transient
from system.process import BoundedOutput
from workers.secrets import redact

log = logging.getLogger(__name__)


class LiveOutput:
    """One running agent's output: the process reader appends under a lock and never waits on the database."""

    def __init__(self, attempt_id: int, lease: queries.Lease, secrets: list[str], limit_bytes: int) -> None:
        self.attempt_id, self.lease, self.secrets = attempt_id, lease, secrets
        self.output = BoundedOutput(limit_bytes)
        self.lock = threading.Lock()
        self.stored = 0  # output.total when last stored

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.output.write(chunk)

    def grown(self) -> tuple[int, str] | None:
        """(bytes so far, the text to store) when the output grew since it was last stored, else None."""
        with self.lock:
            if self.output.total == self.stored:
                return None
            return self.output.total, self.output.text()


class LiveTranscripts:
    """Every few seconds, one transaction stores, redacted, the output of each of this process's running agents
    that grew: a hundred agents cost one write to the database per interval, not a hundred, and no thread each.

    The final transcript, recorded with the agent's outcome, replaces what was stored; a write that comes after
    the attempt moved on changes nothing (store_live_transcripts)."""

    def __init__(self, db: Database, flush_seconds: float, limit_bytes: int) -> None:
        self.db, self.flush_seconds, self.limit_bytes = db, flush_seconds, limit_bytes
        self._watched: dict[str, LiveOutput] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-transcripts", daemon=True)

    @contextmanager
    def watch(self, attempt_id: int, lease: queries.Lease, secrets: list[str]) -> Iterator[LiveOutput]:
        """The attempt's LiveOutput, stored with the others while the block runs."""
        live = LiveOutput(attempt_id, lease, secrets, self.limit_bytes)
        with self._lock:
            self._watched[lease.token] = live
        try:
            yield live
        finally:
            with self._lock:
                self._watched.pop(lease.token, None)

    def flush(self) -> int:
        """Store every watched output that grew, in one transaction; returns how many."""
        with self._lock:
            watched = list(self._watched.values())
        grown = [(live, *change) for live in watched if (change := live.grown()) is not None]
        if not grown:
            return 0
        outputs = [(live.attempt_id, live.lease, redact(text, live.secrets)) for live, _, text in grown]
        with self.db.session() as s:
            queries.store_live_transcripts(s, outputs)
        for live, total, _ in grown:
            live.stored = total
        return len(grown)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30.0)

    def _run(self) -> None:
        while not self._stopped.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # a busy or absent database costs a flush, never an attempt
                log.warning("storing the live transcripts failed", exc_info=not transient(exc))
