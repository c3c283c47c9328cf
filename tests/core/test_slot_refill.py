"""An agent slot takes the next waiting attempt at its agent's end, in the same transaction: no message, no wait."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from sqlalchemy import event

from db import queries
from db.lifecycle import AttemptStatus
from db.models import Attempt
from tests.conftest import in_process_worker
from tests.core.conftest import Fleet, scripted
from tests.core.test_recovery import wait_for
from tests.workers.test_refill_turns import Holder
from workers.constants import AGENT_QUEUE, VERIFY_QUEUE
from workers.embedded_queue import depths
from workers.journal import AGENT
from workers.pipeline import run_agent_attempt
from workers.pipeline.agent_step import AgentEnd, EndRecorded, _record_ends
from workers.pipeline.unit import claim
from workers.refills import RefillTurns


def _statuses(fleet: Fleet) -> list[str]:
    with fleet.db().session() as s:
        return [a.status for a in s.query(Attempt).order_by(Attempt.id)]


def _queued(fleet: Fleet, commands: list[str]) -> None:
    """Tickets of the sample repository, one per agent command, each with one attempt and no agent sandbox."""
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    fleet.sample_repo()
    for n, command in enumerate(commands):
        fleet.submit("--repo", "calc", "--title", f"add {n}", "--attempts", "1", "--agent-cmd", command)


@pytest.mark.parametrize("stopping", [False, True])
def test_a_freed_slot_runs_the_next_waiting_attempt_itself_unless_its_worker_stops(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, stopping: bool
) -> None:
    fleet = embedded
    go = fleet.tmp / "go"
    gated = f"sh -c 'until [ -e {go} ]; do sleep 0.1; done; exec {scripted('fix-add')}'"
    _queued(fleet, [gated] + [scripted("fix-add")] * 2)
    runtime = in_process_worker(fleet, monkeypatch, AGENT_QUEUE)
    runtime.start()  # its heartbeat offers the one slot
    try:
        with fleet.db().session() as s:
            first = min(a.id for a in s.query(Attempt))
        # the task a message for the first attempt starts; the worker is asked to stop while its agent runs
        task = threading.Thread(target=run_agent_attempt, args=(runtime, first))
        task.start()
        wait_for(lambda: _statuses(fleet)[0] == "running", timeout=60)
        if stopping:
            runtime.stopping.set()
        go.touch()
        task.join(120)
    finally:
        runtime.stop()
    queues = depths(runtime.settings.broker_dir)
    if stopping:  # the freed slot is offered to whoever takes the message
        assert _statuses(fleet) == ["verify_queued", "queued", "queued"]
        assert queues == {AGENT_QUEUE: 1, VERIFY_QUEUE: 1}
    else:  # one task ran the three agents, one after the other, and sent only their verifications
        assert _statuses(fleet) == ["verify_queued"] * 3
        assert queues == {AGENT_QUEUE: 0, VERIFY_QUEUE: 3}
    assert runtime.journal.attempt_ids(AGENT) == []  # each outcome left the journal once it was in the database
    with fleet.db().session() as s:
        assert all(a.lease_token is None for a in s.query(Attempt))  # nothing is left held
        assert queries.count_open_attempts(s) == 3


@dataclass
class Ended:
    """Two agents' ends recorded together: the attempts' ids, the ends, their answers, what the database was sent."""

    ids: list[int]
    ends: list[AgentEnd]
    answers: list[EndRecorded]
    transactions: int
    statements: list[tuple[str, object]]  # each with its parameters


def _two_agents_end(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tickets: int, slots: int) -> Ended:
    """`tickets` waiting attempts and a worker of `slots` slots (its heartbeat offers them); the first two attempts
    are claimed, and their agents' ends recorded together."""
    fleet.sample_repo()
    for n in range(tickets):
        fleet.submit("--repo", "calc", "--title", f"add {n}", "--attempts", "1", "--agent-cmd", scripted("fix-add"))
    runtime = in_process_worker(fleet, monkeypatch, AGENT_QUEUE, slots=slots)
    runtime.start()
    transactions: list[object] = []
    statements: list[tuple[str, object]] = []
    began = transactions.append  # one bound method, the listener removed below

    def sent(conn: object, cursor: object, statement: str, parameters: object, *rest: object) -> None:
        statements.append((statement, parameters))

    try:
        with fleet.db().session() as s:
            ids = sorted(a.id for a in s.query(Attempt))
        running = [claim(runtime, attempt_id, AttemptStatus.RUNNING) for attempt_id in ids[:2]]
        ends = [AgentEnd(job.attempt_id, lease, 1, {}, runtime.new_lease()) for job, lease in filter(None, running)]
        event.listen(runtime.db.engine, "begin", began)
        event.listen(runtime.db.engine, "before_cursor_execute", sent)
        answers = _record_ends(runtime, ends)
        event.remove(runtime.db.engine, "begin", began)
        event.remove(runtime.db.engine, "before_cursor_execute", sent)
    finally:
        runtime.stop()
    return Ended(ids, ends, answers, len(transactions), statements)


def test_agents_that_end_together_share_one_transaction_and_each_slot_claims_its_own_next_attempt(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = embedded
    ended = _two_agents_end(fleet, monkeypatch, tickets=4, slots=2)
    ids, answers = ended.ids, ended.answers
    assert ended.transactions == 1  # both ends, the scheduler's pass and both claims
    assert [answer.moved for answer in answers] == [True, True]
    assert [answer.next_job.attempt_id for answer in answers if answer.next_job] == ids[2:]
    assert [answer.sends for answer in answers] == [[], []]  # both chosen attempts were claimed: nothing to send
    assert _statuses(fleet) == ["verify_queued", "verify_queued", "running", "running"]
    with fleet.db().session() as s:
        tokens = [s.get(Attempt, attempt_id).lease_token for attempt_id in ids[2:]]  # type: ignore[union-attr]
    assert tokens == [end.following.token for end in ended.ends]


def test_a_free_slot_beyond_the_ends_gets_its_attempt_sent_while_the_ends_claim_theirs_unmarked(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = embedded
    ended = _two_agents_end(fleet, monkeypatch, tickets=5, slots=3)  # two agents end, three attempts wait
    ids, answers = ended.ids, ended.answers
    assert [answer.next_job.attempt_id for answer in answers if answer.next_job] == ids[2:4]
    assert [answer.sends for answer in answers] == [[(ids[4], AttemptStatus.QUEUED)], []]
    marks = [params for sql, params in ended.statements if sql.startswith("UPDATE attempts SET dispatched_at")]
    assert [[p for p in params if p in ids] for params in marks] == [[ids[4]]]  # the two claimed are never marked
    with fleet.db().session() as s:
        rows = {a.id: (a.status, a.dispatched_at is not None) for a in s.query(Attempt)}
    assert [rows[attempt_id] for attempt_id in ids[2:]] == [("running", False), ("running", False), ("queued", True)]


class RecordedTurns(RefillTurns):
    """The worker's refill turns, each take and give-back written down with whether the slot holds one after it."""

    def __init__(self, turns: int) -> None:
        super().__init__(turns, longest_wait=30.0)
        self.calls: list[tuple[str, bool]] = []

    def take(self) -> bool:
        got = super().take()
        self.calls.append(("take", self.holding()))
        return got

    def give_back(self) -> None:
        super().give_back()
        self.calls.append(("give_back", self.holding()))


@pytest.mark.parametrize("second", [scripted("fix-add"), "false"])  # the second agent ends well, or fails
def test_a_slot_holds_a_refill_turn_from_its_agents_end_to_the_next_agents_start_and_frees_it_when_done(
    embedded: Fleet, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    fleet = embedded
    _queued(fleet, [scripted("fix-add"), second])
    runtime = in_process_worker(fleet, monkeypatch, AGENT_QUEUE)
    turns = runtime.refills = RecordedTurns(1)
    runtime.start()
    try:
        with fleet.db().session() as s:
            first = min(a.id for a in s.query(Attempt))
        run_agent_attempt(runtime, first)  # the first agent's end claims the second for this slot
    finally:
        runtime.stop()
    started = [("take", True), ("give_back", False)]  # the slot's first claim, then its first agent's start
    between = [("take", True), ("give_back", False)]  # the first agent's end, then the second agent's start
    ended = [("take", True), ("give_back", False)]  # the second's end; the slot has nothing more to run
    assert turns.calls == [*started, *between, *ended]
    assert _statuses(fleet) == ["verify_queued", "verify_queued" if second != "false" else "finished"]
    assert Holder(turns).got == [True]  # the one turn is free for the next slot


def test_the_worktree_pools_of_a_worker_have_the_size_set_for_the_host_else_none(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = fleet.home / "mirrors" / "repo-1.git"
    unsized = in_process_worker(fleet, monkeypatch, AGENT_QUEUE, slots=2)
    assert unsized.pool("repo-1", "agent", mirror).size is None  # the host's slots bound it, not this worker's
    monkeypatch.setenv("FLEET_WORKTREE_POOL_SIZE", "5")
    assert in_process_worker(fleet, monkeypatch, AGENT_QUEUE, slots=2).pool("repo-1", "verify", mirror).size == 5
