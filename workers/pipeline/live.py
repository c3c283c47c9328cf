"""The live transcript: a running agent's output so far, stored on its attempt every few seconds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from db import queries
from db.engine import transient
from system.process import BoundedOutput
from workers.pipeline.job import job_secrets
from workers.pipeline.unit import Unit
from workers.runtime import WorkerRuntime
from workers.secrets import redact

log = logging.getLogger(__name__)


class LiveTranscript:
    """Collects output chunks from the process reader; a flusher thread stores them, redacted, when they changed.

    The reader only appends under a lock (the agent never waits on the database); the flusher opens a short
    session per write, so no session is held while the agent runs.
    """

    def __init__(self, rt: WorkerRuntime, unit: Unit) -> None:
        self.rt, self.unit = rt, unit
        self.output = BoundedOutput(rt.settings.transcript_limit_bytes)
        self.lock = threading.Lock()
        self.stored = 0  # output.total when last stored
        self.stop = threading.Event()

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.output.write(chunk)

    def flush(self) -> None:
        """Store the output so far if it grew since the last time."""
        with self.lock:
            total, text = self.output.total, self.output.text() if self.output.total != self.stored else ""
        if total == self.stored:
            return
        job = self.unit.job
        with self.rt.db.session() as s:
            queries.store_live_transcript(s, job.attempt_id, self.unit.lease, redact(text, job_secrets(job)))
        self.stored = total

    def run(self) -> None:
        while not self.stop.wait(self.rt.settings.transcript_flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # a busy or absent database costs a flush, never the attempt
                trace = not transient(exc)
                log.warning("attempt %s: storing the live transcript failed", self.unit.job.attempt_id, exc_info=trace)


@contextmanager
def live_transcript(rt: WorkerRuntime, unit: Unit) -> Iterator[LiveTranscript]:
    """A LiveTranscript whose flusher runs for the duration; the final transcript replaces what it stored."""
    live = LiveTranscript(rt, unit)
    flusher = threading.Thread(target=live.run, name=f"transcript-{unit.job.attempt_id}", daemon=True)
    flusher.start()
    try:
        yield live
    finally:
        live.stop.set()
        flusher.join(timeout=30.0)
