"""Work whose lease is lost, or whose worker hands its work back, stops: its result could no longer be written."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import cast

from db.engine import Database
from workers.merge_build import _keep
from workers.runtime import LeaseBook, WorkerRuntime


def test_a_merge_build_whose_lease_is_lost_is_cancelled(migrated: Database) -> None:
    runtime = cast(WorkerRuntime, SimpleNamespace(db=migrated, settings=SimpleNamespace(lease_seconds=1.5)))
    cancel = threading.Event()
    keeper = threading.Thread(target=_keep, args=(runtime, 404, "a token no entry holds", cancel), daemon=True)
    keeper.start()
    keeper.join(30)
    assert not keeper.is_alive()
    assert cancel.is_set()  # the build's tests stop at once, where they ran on to a verdict nobody could write


def test_handing_back_cancels_the_attempts_held_now_and_those_claimed_after() -> None:
    book = LeaseBook()
    running = book.hold("first", 1)
    book.cancel_all()
    assert running.is_set()
    assert book.hold("claimed at that moment", 2).is_set()
    other = LeaseBook()
    assert not other.hold("elsewhere", 3).is_set()
