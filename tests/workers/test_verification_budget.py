"""A worker runs FLEET_VERIFY_CONCURRENCY test runs at once, while more verifications are under way around them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import Database
from db.migrate import upgrade
from system.settings import Settings
from workers.celery_app import create_app
from workers.queue import Dispatcher
from workers.runtime import VERIFICATIONS_PER_TEST_RUN, WorkerRuntime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WorkerRuntime]:
    settings = Settings(home=tmp_path, verify_concurrency=2)
    db = Database(settings.db_url)
    upgrade(db)
    worker = WorkerRuntime(settings, db, Dispatcher(create_app(settings)), 4, "fleet.verify")
    worker.start()
    yield worker
    worker.stop()


class Peaks:
    """The most callers seen at once in each of two places."""

    def __init__(self) -> None:
        self.lock, self.now, self.most = threading.Lock(), {"under way": 0, "testing": 0}, {}

    def enter(self, place: str) -> None:
        with self.lock:
            self.now[place] += 1
            self.most[place] = max(self.most.get(place, 0), self.now[place])

    def leave(self, place: str) -> None:
        with self.lock:
            self.now[place] -= 1


def test_test_runs_stay_within_the_budget_while_more_verifications_wait_around_them(runtime: WorkerRuntime) -> None:
    peaks, done = Peaks(), threading.Semaphore(0)

    def verification(rt: WorkerRuntime, number: int) -> None:
        peaks.enter("under way")
        time.sleep(0.05)  # the claim and the checkout: waiting on the database and git
        with rt.test_run(threading.Event()):
            peaks.enter("testing")
            time.sleep(0.05)
            peaks.leave("testing")
        peaks.leave("under way")
        done.release()

    for number in range(16):
        runtime.verify_later(verification, number)
    for _ in range(16):
        assert done.acquire(timeout=30)
    assert peaks.most == {"under way": 2 * VERIFICATIONS_PER_TEST_RUN, "testing": 2}


def test_a_verification_cancelled_while_it_waits_for_a_test_run_goes_on_without_one(runtime: WorkerRuntime) -> None:
    release, cancel = threading.Event(), threading.Event()

    def hold(rt: WorkerRuntime, _: int) -> None:
        with rt.test_run(threading.Event()):
            release.wait(30)

    runtime.verify_later(hold, 1)
    runtime.verify_later(hold, 2)  # the budget of two is taken
    time.sleep(0.2)
    cancel.set()
    with runtime.test_run(cancel):
        pass  # reached although both places are still taken
    release.set()
