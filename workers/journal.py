"""The outcome journal: a finished agent run or verification, kept on the worker's disk before the database is told.

An agent run can cost an hour and real money; the database may be away when it ends. Its outcome is written here
first (to a temporary file, renamed), so a worker that takes the attempt over on this host finds it and goes on to
verification instead of running the agent again, and the reconciler of this host writes it into the database as
soon as the database answers (db.queries.keep_agent_outcome), for workers on other hosts. An entry is dropped when
its attempt is concluded.

An entry outlives its process as written (the kernel holds it). It is fsync'd, with its folder, only when the
database did not answer its outcome's write (kept_while): then it must outlive a power cut too. Until then a crash
of the machine loses what the database is being told that very moment, as it loses an agent still running; four
fsyncs a ticket cost the worker more CPU than anything else it asked of the disk, and held up each slot's refill.

A dropped entry is not deleted but kept, under a name of its own, as a spare this process writes its next entry
over (at most MAX_SPARES): a ticket writes two entries, and on ext4 without a journal (common on cloud machines)
making a file, or freeing a block by emptying one, costs tens of times a write into a block the file has
(bench/file_churn.py). A spare holds what its entry held, already in the database, until it is written over; one
larger than SPARE_BYTES is emptied at once. Spares are kept and deleted as workers/spares.py says.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from system.files import write_over
from workers.spares import MAX_SPARES, Spares

AGENT = "agent"
VERIFY = "verify"
ENTRY = re.compile(r"([0-9]+)\.(agent|verify)\.json")
SPARE_BYTES = 65536  # a larger entry is emptied as it becomes a spare, so spares hold little disk


class OutcomeJournal:
    """Entries under one folder, one file per attempt and step, each naming the attempt it belongs to."""

    def __init__(self, root: Path, spares: int = MAX_SPARES, sync: Callable[[int], None] = os.fsync) -> None:
        self.root = root
        self.spares = Spares(root, _empty_when_large, spares)
        self._sync = sync

    def _path(self, attempt_id: int, kind: str) -> Path:
        return self.root / f"{attempt_id}.{kind}.json"

    def save(self, attempt_id: int, kind: str, fingerprint: str, outcome: dict[str, Any]) -> None:
        """Write the entry whole, under its name at once: it survives a kill -9 once this returns (a power cut once
        it is made durable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(attempt_id, kind)
        partial = path.with_suffix(".partial")
        self.spares.take(partial)  # else the write below makes the file
        data = json.dumps({"fingerprint": fingerprint, "outcome": outcome}, default=str).encode()
        write_over(partial, data)
        os.replace(partial, path)

    def kept_while(self, attempt_id: int, away: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
        """away, for retrying the write of the attempt's outcome: when it says the database is away, the attempt's
        entries are made durable first (they may wait a while, and must outlive a power cut meanwhile)."""

        def kept(exc: BaseException) -> bool:
            if not away(exc):
                return False
            self.make_durable(attempt_id)
            return True

        return kept

    def make_durable(self, attempt_id: int) -> None:
        """fsync the attempt's entries, then their folder (their names)."""
        for kind in (AGENT, VERIFY):
            try:
                entry = os.open(self._path(attempt_id, kind), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                self._sync(entry)
            finally:
                os.close(entry)
        folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._sync(folder)
        finally:
            os.close(folder)

    def load(self, attempt_id: int, kind: str, fingerprint: str) -> dict[str, Any] | None:
        """The outcome kept for this attempt (and this very attempt: the fingerprint must match), or None."""
        try:
            entry = json.loads(self._path(attempt_id, kind).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        outcome = entry.get("outcome")
        return outcome if isinstance(outcome, dict) else None

    def drop(self, attempt_id: int, kinds: tuple[str, ...] = (AGENT, VERIFY)) -> None:
        for kind in kinds:
            entry = self._path(attempt_id, kind)
            if not self.spares.keep(entry):
                entry.unlink(missing_ok=True)

    def attempt_ids(self, kind: str) -> list[int]:
        """The attempts with an entry of kind, from the file names alone (nothing is read)."""
        if not self.root.is_dir():
            return []
        found = (ENTRY.fullmatch(name) for name in os.listdir(self.root))
        return sorted(int(match.group(1)) for match in found if match and match.group(2) == kind)


def _empty_when_large(spare: Path) -> None:
    """A kept entry holds what it held, already in the database, until written over; a large one is emptied."""
    handle = os.open(spare, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(handle).st_size > SPARE_BYTES:
            os.ftruncate(handle, 0)
    finally:
        os.close(handle)
