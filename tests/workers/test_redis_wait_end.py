"""A worker that stops itself ends its own waits for a message on the Redis broker at once, and no one else's."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import redis

from system.settings import Settings
from workers.celery_app import create_app
from workers.redis_transport import client_name, end_waits, nameable
from workers.serve import _broker_client_name

WAIT_SECONDS = 60  # a BRPOP that was not ended would take this long
PROMPT_SECONDS = 20.0


def _waiting(url: str, name: str, key: str) -> tuple[threading.Thread, list[object]]:
    """A thread whose connection, named name, waits on key with BRPOP; what BRPOP answered goes in the list."""
    answered: list[object] = []
    client = redis.Redis.from_url(url, client_name=name, socket_timeout=2 * WAIT_SECONDS)

    def wait() -> None:
        answered.append(client.brpop([key], timeout=WAIT_SECONDS))
        client.close()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, answered


def _blocked(url: str, names: set[str]) -> dict[str, int]:
    """The client ids of the connections named names, once each is blocked in BRPOP."""
    deadline = time.monotonic() + PROMPT_SECONDS
    with redis.Redis.from_url(url) as admin:
        while time.monotonic() < deadline:
            found = {c["name"]: int(c["id"]) for c in admin.client_list() if c["cmd"] == "brpop"}
            if names <= found.keys():
                return found
            time.sleep(0.05)
    raise AssertionError(f"{names} never waited in BRPOP")


def test_a_worker_s_broker_connections_carry_the_name_it_gives_them(redis_url: str, tmp_path: Path) -> None:
    assert nameable(redis_url)
    settings = Settings(home=tmp_path, broker_url=redis_url)
    assert _broker_client_name(settings, until_idle=True) == client_name()
    assert _broker_client_name(settings, until_idle=False) == ""  # a worker that never stops itself names nothing
    app = create_app(settings, client_name())
    with app.connection_for_read() as conn:
        conn.default_channel.client.ping()
        with redis.Redis.from_url(redis_url) as admin:
            assert client_name() in {entry["name"] for entry in admin.client_list()}


def test_a_broker_that_refuses_names_gets_none_and_still_serves(redis_url: str, tmp_path: Path) -> None:
    user = f"fleet-test-{uuid.uuid4().hex[:8]}"
    with redis.Redis.from_url(redis_url) as admin:
        admin.acl_setuser(
            user, enabled=True, nopass=True, keys=["*"], channels=["*"], commands=["+@all", "-client|setname"]
        )
        try:
            url = redis_url.replace("redis://", f"redis://{user}:x@")
            assert not nameable(url)
            assert _broker_client_name(Settings(home=tmp_path, broker_url=url), until_idle=True) == ""
            app = create_app(Settings(home=tmp_path, broker_url=url))  # as serve() then makes it: no name
            with app.connection_for_read() as conn:
                assert conn.default_channel.client.ping()
        finally:
            admin.acl_deluser(user)


def test_end_waits_unblocks_this_process_s_waits_and_leaves_others_waiting(redis_url: str) -> None:
    ours, our_answer = _waiting(redis_url, client_name(), "fleet-test-ours")
    theirs, their_answer = _waiting(redis_url, "fleet-worker-1-another", "fleet-test-theirs")
    ids = _blocked(redis_url, {client_name(), "fleet-worker-1-another"})
    try:
        assert end_waits(redis_url) == 1
        ours.join(timeout=PROMPT_SECONDS)
        assert not ours.is_alive() and our_answer == [None]  # as if its time were up: no message, no error
        theirs.join(timeout=0.5)
        assert theirs.is_alive() and their_answer == []
    finally:
        with redis.Redis.from_url(redis_url) as admin:
            admin.client_unblock(ids["fleet-worker-1-another"])
        theirs.join(timeout=PROMPT_SECONDS)


def test_a_broker_that_does_not_answer_ends_nothing() -> None:
    assert end_waits("redis://127.0.0.1:9/0") == 0
