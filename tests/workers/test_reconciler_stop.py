"""A stopping worker lets its reconciler finish the pass in flight: a pass cut short by the process's exit left
a notification claimed and not sent (a try counted, and the row held a minute before it was sent)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from db.engine import Database
from db.migrate import upgrade
from system.settings import Settings
from workers.celery_app import create_app
from workers.queue import Dispatcher
from workers.reconciler import ReconcilerThread


def test_a_stopping_reconciler_finishes_the_pass_in_flight(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", reconcile_seconds=0.05)
    db = Database(settings.db_url)
    upgrade(db)
    started, finished = threading.Event(), threading.Event()

    def slow_pass(dispatcher: object) -> None:  # a webhook that takes its time to answer
        started.set()
        time.sleep(0.5)
        finished.set()

    reconciler = ReconcilerThread(db, Dispatcher(create_app(settings)), settings, passes=[slow_pass])
    reconciler.start()
    assert started.wait(10)
    reconciler.stop()
    assert finished.is_set() and not reconciler.is_alive()
    db.dispose()
