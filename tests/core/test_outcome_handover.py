"""The reconciler hands a journaled agent outcome to the database only when its attempt's holder stopped renewing
the lease: before the lease runs out, so no worker on another host runs the agent again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from db.models import Attempt, utcnow
from tests.conftest import in_process_worker
from tests.core.conftest import Fleet
from workers.agents.contracts import AgentResult
from workers.constants import AGENT_QUEUE
from workers.journal import AGENT
from workers.pipeline.agent_step import RENEWALS_MISSED, hand_over_kept
from workers.pipeline.job import fingerprint
from workers.pipeline.outcome import kept_outcome

GONE = 999_999


def _lease(fleet: Fleet, attempt_id: int, seconds: float, finished: bool = False) -> None:
    with fleet.db().session() as s:
        attempt = s.get(Attempt, attempt_id)
        assert attempt is not None
        attempt.status, attempt.lease_owner, attempt.lease_token = "running", "another-process", "token"
        attempt.lease_expires_at = utcnow() + timedelta(seconds=seconds)
        attempt.agent_finished_at = utcnow() if finished else None


def _diffs(fleet: Fleet) -> dict[int, str | None]:
    with fleet.db().session() as s:
        return {a.id: a.diff for a in s.query(Attempt)}


def test_only_an_outcome_whose_holder_is_gone_is_handed_over(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet.sample_repo()
    for n in range(4):
        fleet.submit("--repo", "calc", "--title", f"t{n}", "--attempts", "1", "--agent-cmd", "true")
    runtime = in_process_worker(fleet, monkeypatch, AGENT_QUEUE)
    renewed, missed = runtime.settings.lease_seconds, runtime.settings.heartbeat_seconds * (RENEWALS_MISSED + 1)
    with fleet.db().session() as s:
        held, orphaned, stale, stored = ids = sorted(a.id for a in s.query(Attempt))
        prints = {a.id: fingerprint(a.ticket_id, a.run_id, a.number, a.created_at) for a in s.query(Attempt)}
    _lease(fleet, held, seconds=renewed)  # another worker process of this host renews it: it records its outcome
    _lease(fleet, orphaned, seconds=-1)  # its worker died after its agent ended: nobody else will record it
    _lease(fleet, stale, seconds=renewed - missed)  # not run out yet, but its holder stopped renewing it
    _lease(fleet, stored, seconds=renewed, finished=True)  # recorded already
    result = AgentResult(exit_code=0, transcript="done", duration=1.0)
    for attempt_id in ids:
        kept = kept_outcome(result, f"diff {attempt_id}", "", 1, {})
        runtime.journal.save(attempt_id, AGENT, prints[attempt_id], kept)
    runtime.journal.save(GONE, AGENT, "1:1:1:another database", kept_outcome(result, "lost", "", 1, {}))

    assert hand_over_kept(runtime) == 2
    assert _diffs(fleet) == {held: "", orphaned: f"diff {orphaned}", stale: f"diff {stale}", stored: ""}
    assert runtime.journal.attempt_ids(AGENT) == [held, orphaned, stale]  # the stored and the gone are dropped

    _lease(fleet, held, seconds=-1)  # now its holder is gone too
    assert hand_over_kept(runtime) == 1
    assert _diffs(fleet)[held] == f"diff {held}"
    assert hand_over_kept(runtime) == 0 and runtime.journal.attempt_ids(AGENT) == []
    runtime.db.dispose()
