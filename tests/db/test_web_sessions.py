"""A token keeps at most SESSIONS_PER_TOKEN web sessions even when its logins come at the same moment, on SQLite and
PostgreSQL alike: each login takes the token's row first, so the logins of one token take turns."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

from sqlalchemy import func, select

from db import tokens
from db.engine import Database
from db.migrate import upgrade
from db.models import WebSession
from db.websessions import SESSIONS_PER_TOKEN, add_session

LIFETIME = timedelta(hours=12)
AT_ONCE = 6


def test_logins_at_the_same_moment_keep_the_cap(database_url: str) -> None:
    db = Database(database_url)
    upgrade(db)
    with db.session() as s:
        token = tokens.add_token(s, "viewer1", "viewer", "0" * 64).id
        for n in range(SESSIONS_PER_TOKEN - 1):  # one short of the cap: every login alone would keep it
            add_session(s, token, f"{n:064d}", LIFETIME)
    # Each login holds its transaction open until all have written (or a second has passed: logins that take turns
    # cannot all meet), so that logins that do not take turns commit together, as two at the same moment can.
    met = threading.Barrier(AT_ONCE, timeout=1.0)
    failures: list[BaseException] = []

    def login(n: int) -> None:
        try:
            with db.session() as s:
                add_session(s, token, f"{n:064x}", LIFETIME)
                with contextlib.suppress(threading.BrokenBarrierError):
                    met.wait()
        except BaseException as exc:  # a thread's error fails the test below, not silently
            failures.append(exc)

    threads = [threading.Thread(target=login, args=(n,)) for n in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    with db.session() as s:
        count = s.scalar(select(func.count()).select_from(WebSession).where(WebSession.token_id == token))
    db.dispose()
    assert count == SESSIONS_PER_TOKEN
