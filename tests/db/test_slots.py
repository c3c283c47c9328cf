"""An agent slot is held by an attempt sent to or running its agent, never by one waiting for or in verification."""

from __future__ import annotations

import pytest

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from db.migrate import upgrade
from system.settings import Settings
from tests.db.statements import statements_sent
from workers.scheduler import plan


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    return database


def _attempts(db: Database, n: int) -> list[int]:
    with db.session() as s:
        repo = queries.add_repo(s, name="r", source="/nowhere", test_cmd="true")
        ids = []
        for k in range(n):
            ticket = queries.add_ticket(
                s, ["shell"], repo_id=repo.id, title=f"t{k}", base_ref="HEAD", base_sha="0" * 40, agent="shell"
            )
            ids.append(queries.add_attempt(s, ticket.runs[0], "prompt").id)
        queries.beat(s, "w1", hostname="h", pid=1, slots=2, busy=0, queues="agent,verify", stopped_at=None)
        return ids


def _move(db: Database, attempt_id: int, status: AttemptStatus) -> None:
    lease = queries.Lease(owner="w1", token=f"token-{attempt_id}", seconds=60)
    with db.session() as s:
        assert queries.claim(s, attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING, lease)
        if status != AttemptStatus.RUNNING:
            assert queries.advance(s, attempt_id, lease, AttemptStatus.VERIFY_QUEUED)
        if status == AttemptStatus.VERIFYING:
            assert queries.claim(s, attempt_id, AttemptStatus.VERIFY_QUEUED, AttemptStatus.VERIFYING, lease)


def test_verification_holds_no_agent_slot(db: Database, tmp_path: object) -> None:
    first, second, *waiting = _attempts(db, 5)
    _move(db, first, AttemptStatus.VERIFY_QUEUED)
    _move(db, second, AttemptStatus.VERIFYING)
    settings = Settings(home=tmp_path)
    with db.session() as s:
        sent = plan(s, settings)
    assert [a for a, _ in sent] == waiting[:2]  # both slots refill while the first two are being verified
    with db.session() as s:
        assert plan(s, settings) == []  # and the two sent hold them


def test_a_pass_with_nothing_waiting_reads_no_repository_limits(db: Database, tmp_path: object) -> None:
    """Every worker's reconciler plans a pass each second, idle or not: an idle one stops at the waiting line."""
    for attempt_id in _attempts(db, 1):
        _move(db, attempt_id, AttemptStatus.VERIFY_QUEUED)
    with statements_sent(db.engine) as sent, db.session() as s:
        assert plan(s, Settings(home=tmp_path)) == []
    assert sent and not [statement for statement in sent if "repos.settings" in statement]
