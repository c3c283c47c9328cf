"""The embedded worker's loop waits for its broker folder only as long as nothing in its own process speaks: a
message this process puts, or a stop it asks, is seen at once rather than at the next look at the folder."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celery.worker.state
import kombu
import pytest

from system.settings import Settings
from workers import celery_app
from workers.celery_app import Wakeups, ask_worker_to_stop, create_app

ROOT = Path(__file__).resolve().parents[2]
LONG_POLL_SECONDS = 60.0  # a loop that waited for the folder would take this long
PROMPT_SECONDS = 20.0  # far less, and far more than a woken loop takes on a loaded machine


@pytest.fixture
def long_poll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(celery_app, "EMBEDDED_POLL_SECONDS", LONG_POLL_SECONDS)
    celery.worker.state.should_stop = None
    yield
    celery.worker.state.should_stop = None


def _queue() -> kombu.Queue:
    """A queue of the test's own: kombu's filesystem transport keeps the exchanges declared in a process (an
    earlier test's `verify`, bound to its own broker folder) in one table all its connections share."""
    name = f"wake-{uuid.uuid4().hex[:8]}"
    return kombu.Queue(name, kombu.Exchange(name), name)


def _connection(home: Path) -> kombu.Connection:
    return create_app(Settings(home=home)).connection_for_read()


def _drain(conn: kombu.Connection) -> None:
    """One cycle of Celery's loop: a drain with nothing to deliver raises TimeoutError."""
    with contextlib.suppress(TimeoutError):
        conn.drain_events()


def _in_thread(loop: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_a_message_this_process_puts_is_delivered_without_waiting_for_the_next_look(
    tmp_path: Path, long_poll: None
) -> None:
    received: list[Any] = []
    queue = _queue()
    with _connection(tmp_path) as conn, conn.Consumer(queue, callbacks=[lambda body, _: received.append(body)]):

        def celery_loop() -> None:
            while not received:
                _drain(conn)

        loop = _in_thread(celery_loop)
        loop.join(timeout=0.5)  # the loop has looked at the empty folder and waits
        with _connection(tmp_path) as sender:
            sender.Producer().publish({"attempt": 7}, exchange=queue.exchange, routing_key=queue.name)
        loop.join(timeout=PROMPT_SECONDS)
        assert not loop.is_alive()
    assert received == [{"attempt": 7}]


def test_a_stop_asked_in_this_process_ends_the_wait_at_once(tmp_path: Path, long_poll: None) -> None:
    queue = _queue()
    cycles: list[int] = []

    def celery_loop() -> None:
        """As Celery's: it looks at its stop flag, then drains once more before it stops."""
        while True:
            stopping = celery.worker.state.should_stop is not None
            cycles.append(1)
            _drain(conn)
            if stopping:
                return

    with _connection(tmp_path) as conn, conn.Consumer(queue, callbacks=[]):
        loop = _in_thread(celery_loop)
        loop.join(timeout=0.5)
        assert loop.is_alive() and len(cycles) == 1  # waiting for the folder
        ask_worker_to_stop()
        loop.join(timeout=PROMPT_SECONDS)
        assert not loop.is_alive() and len(cycles) == 2
    assert celery.worker.state.should_stop == 0


def test_a_ring_after_a_loop_s_look_ends_its_wait_even_when_another_loop_woke_on_it_first() -> None:
    wakeups = Wakeups()
    looked = wakeups.count()  # loop A has looked at the folder and found it empty
    other = _in_thread(lambda: wakeups.wait_past(wakeups.count(), LONG_POLL_SECONDS))  # loop B waits
    other.join(timeout=0.2)
    wakeups.ring()  # a message is put
    other.join(timeout=PROMPT_SECONDS)
    assert not other.is_alive()
    waiting = _in_thread(lambda: wakeups.wait_past(looked, LONG_POLL_SECONDS))  # loop A waits only now
    waiting.join(timeout=PROMPT_SECONDS)
    assert not waiting.is_alive()


def test_a_message_another_process_puts_is_delivered_at_the_loop_s_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery_app, "EMBEDDED_POLL_SECONDS", 0.2)  # the only way such a message is seen
    received: list[Any] = []
    queue = _queue()
    publish = (
        "import sys, kombu; from pathlib import Path; from system.settings import Settings;"
        "from workers.celery_app import create_app;"
        "q = kombu.Queue(sys.argv[2], kombu.Exchange(sys.argv[2]), sys.argv[2]);"
        "c = create_app(Settings(home=Path(sys.argv[1]))).connection_for_write();"
        "c.Producer().publish({'attempt': 8}, exchange=q.exchange, routing_key=q.name, declare=[q])"
    )
    with _connection(tmp_path) as conn, conn.Consumer(queue, callbacks=[lambda body, _: received.append(body)]):

        def celery_loop() -> None:
            while not received:
                _drain(conn)

        loop = _in_thread(celery_loop)
        subprocess.run([sys.executable, "-c", publish, str(tmp_path), queue.name], check=True, cwd=ROOT)
        loop.join(timeout=PROMPT_SECONDS)
        assert not loop.is_alive()
    assert received == [{"attempt": 8}]
