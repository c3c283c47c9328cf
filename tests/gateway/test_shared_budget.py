"""A ticket's budget, read by every worker: two attempts of one ticket (a fan-out) on two workers' gateways each
count what the other's calls in flight hold, and a worker that stopped mid-call holds nothing afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus, move
from db.migrate import upgrade
from db.models import Attempt as AttemptRow
from db.models import BudgetHold, Worker, utcnow
from tests.gateway.conftest import (
    CHAT,
    PRICES,
    Attempt,
    attempt_holds,
    gate_key,
    held,
    in_flight,
    new_attempts,
    open_gate,
    wait_until,
)
from tests.gateway.upstream import Upstream
from workers.gateway.attempt import AttemptMeter
from workers.gateway.handler import Call, Hold
from workers.gateway.server import GatewayGate, ModelGateway
from workers.gateway.usage import Usage, Wire

BUDGET = 0.01  # a call in flight naming no output limit holds 32,768 tokens of output, $0.33: all of it
ADMISSION_BEGINS_SECONDS = 0.5  # from a call's place taken to its admission begun: a small body read, on loopback


@pytest.fixture
def shared(database_url: str) -> Database:
    """The database every worker of a team reads, on SQLite and on PostgreSQL."""
    database = Database(database_url)
    upgrade(database)
    return database


@pytest.fixture
def workers() -> Iterator[tuple[ModelGateway, ModelGateway]]:
    """Two workers' gateways: each its own listener, loop and gates, as in two processes."""
    first, second = ModelGateway(), ModelGateway()
    yield first, second
    first.close()
    second.close()


def _fan_out(db: Database, budget_usd: float) -> tuple[Attempt, Attempt]:
    """A ticket sent to two agents, each attempt running (claimed by a worker)."""
    first, second = new_attempts(db, budget_usd, runs=2)
    return first, second


def _held_in(db: Database, attempt: Attempt) -> float:
    return attempt_holds(db, attempt.attempt_id)


def _meter(db: Database, attempt: Attempt, budget_usd: float, worker: str) -> AttemptMeter:
    return AttemptMeter(db, attempt.attempt_id, attempt.ticket_id, budget_usd, PRICES, worker)


def _long_ago(db: Database, meter: AttemptMeter, beat: bool) -> None:
    """The meter's gate held nothing new for an hour, and its worker (if beat) last beat an hour ago."""
    an_hour_ago = utcnow() - timedelta(hours=1)
    with db.session() as s:
        s.get_one(BudgetHold, meter.gate).held_at = an_hour_ago
        if beat:
            queries.beat(s, meter.worker, hostname="old", pid=1, slots=1)
            s.flush()
            s.get_one(Worker, meter.worker).heartbeat_at = an_hour_ago


def test_a_call_in_flight_on_one_worker_counts_against_the_budget_another_worker_reads(
    shared: Database, workers: tuple[ModelGateway, ModelGateway], upstream: Upstream
) -> None:
    upstream.seen.clear()
    first, second = _fan_out(shared, BUDGET)
    with (
        open_gate(workers[0], upstream, first, budget_usd=BUDGET, prices=PRICES) as one,
        open_gate(workers[1], upstream, second, budget_usd=BUDGET, prices=PRICES) as two,
        httpx.Client(base_url=one.url, timeout=30) as agent_one,
        httpx.Client(base_url=two.url, timeout=30) as agent_two,
    ):
        with in_flight(agent_one, one):
            assert held(one) > BUDGET
            refused = agent_two.post("/openai/chat/completions", json=CHAT, headers=gate_key(two))
        assert refused.status_code == 402
        assert refused.json()["error"]["message"] == (
            "fleet gateway: the ticket's budget of $0.01 ran out mid-attempt ($0.0000 spent, $0.3277 held by calls in"
            " flight for their input and output limits)"
        )
        wait_until(lambda: held(one) == 0.0, "the first call's hold outlived it")  # its agent hung up
    assert len(upstream.seen) == 1  # only the first attempt's call reached the provider


def test_what_a_stopped_worker_held_counts_no_more(
    shared: Database, workers: tuple[ModelGateway, ModelGateway], upstream: Upstream
) -> None:
    # A worker killed mid-call cannot let go of its call's hold: its attempt goes back in line when the lease lapses,
    # and a waiting attempt holds nothing; its next gate, on any worker, starts from nothing.
    first, second = _fan_out(shared, BUDGET)
    killed = _meter(shared, first, 10.0, "killed-worker")
    assert killed.admit("gpt-4o", 5.0) is None
    _long_ago(shared, killed, beat=True)
    with shared.session() as s:
        move(s.get_one(AttemptRow, first.attempt_id), AttemptStatus.QUEUED)
    with (
        open_gate(workers[1], upstream, second, budget_usd=BUDGET, prices=PRICES) as two,
        httpx.Client(base_url=two.url, timeout=30) as agent_two,
    ):
        assert agent_two.post("/openai/chat/completions", json=CHAT, headers=gate_key(two)).status_code == 200
    assert _held_in(shared, first) == 5.0
    with shared.session() as s:
        move(s.get_one(AttemptRow, first.attempt_id), AttemptStatus.RUNNING)
    with open_gate(workers[0], upstream, first, budget_usd=BUDGET, prices=PRICES) as again:
        assert held(again) == 0.0


def test_a_new_gate_leaves_the_holds_of_the_old_gate_still_calling(
    shared: Database, workers: tuple[ModelGateway, ModelGateway], upstream: Upstream
) -> None:
    """The attempt's lease lapsed on one worker, still alive and calling the model, and another took it up: the new
    gate's opening leaves the old gate's call in flight held, so the ticket's other attempt is refused; the old
    call's end lets go of its hold."""
    first, second = _fan_out(shared, BUDGET)
    with (
        open_gate(workers[0], upstream, first, budget_usd=BUDGET, prices=PRICES, worker="old") as old,
        open_gate(workers[0], upstream, second, budget_usd=BUDGET, prices=PRICES) as two,
        httpx.Client(base_url=old.url, timeout=30) as agent_old,
        httpx.Client(base_url=two.url, timeout=30) as agent_two,
    ):
        with in_flight(agent_old, old):
            holding = held(old)
            assert holding > BUDGET
            with open_gate(workers[1], upstream, first, budget_usd=BUDGET, prices=PRICES, worker="new") as new:
                new.flush()  # its opening written
                assert held(new) == holding
                assert agent_two.post("/openai/chat/completions", json=CHAT, headers=gate_key(two)).status_code == 402
        wait_until(lambda: held(old) == 0.0, "the old gate's call ended and kept its hold")


@pytest.mark.parametrize("beating", [True, False], ids=["worker-beats", "gate-held-lately"])
def test_a_gate_is_alive_while_its_worker_beats_or_it_held_lately(shared: Database, beating: bool) -> None:
    first, _ = _fan_out(shared, 1.0)
    old_gate, new_gate = _meter(shared, first, 1.0, "old-worker"), _meter(shared, first, 1.0, "new-worker")
    assert old_gate.admit("gpt-4o", 1.0) is None
    if beating:  # its gate held nothing new for an hour, but its worker beats: a long call may still be in flight
        _long_ago(shared, old_gate, beat=False)
        with shared.session() as s:
            queries.beat(s, "old-worker", hostname="old", pid=1, slots=1)
    new_gate.open()
    refusal = new_gate.admit("gpt-4o", 0.01)
    assert refusal is not None and "ran out" in refusal
    spent_all = Usage(input_tokens=0, output_tokens=100_000)  # gpt-4o: $1.00 of output
    old_gate.record(Call(Wire.CHAT, "gpt-4o", False, 200, spent_all, 1.0, None, "", "", hold=Hold(2.0, True)))
    assert _held_in(shared, first) == 0.0  # never below zero: a negative hold would pass later calls
    refusal = new_gate.admit("gpt-4o", 0.01)
    assert refusal is not None and "($1.0000 spent)" in refusal


def test_a_dead_gates_holds_are_let_go_when_a_new_gate_opens(shared: Database) -> None:
    """A gate whose worker stopped beating an hour ago and which held nothing since died mid-call: the attempt's next
    gate lets go of its holds, and of no other gate's."""
    first, second = _fan_out(shared, 10.0)
    dead, alive, other = (_meter(shared, a, 10.0, "w") for a in (first, first, second))
    for meter in (dead, alive, other):
        assert meter.admit("gpt-4o", 1.0) is None
    _long_ago(shared, dead, beat=True)
    _meter(shared, first, 10.0, "new-worker").open()
    assert _held_in(shared, first) == 1.0  # the live gate's
    assert _held_in(shared, second) == 1.0
    alive.release()
    assert _held_in(shared, first) == 0.0


def test_a_gate_that_died_just_after_it_held_is_let_go_of_once_silent_for_a_lease(shared: Database) -> None:
    """Its worker killed just after the gate's last hold, the attempt taken up again soon: the new gate's opening
    cannot tell the old gate dead yet, so its hold counts; once the old gate and its worker have been silent for a
    lease's length, the new gate's next call lets go of it rather than being refused."""
    first, _ = _fan_out(shared, 1.0)
    dead, new = _meter(shared, first, 1.0, "killed-worker"), _meter(shared, first, 1.0, "new-worker")
    assert dead.admit("gpt-4o", 1.0) is None
    new.open()
    refusal = new.admit("gpt-4o", 0.01)
    assert refusal is not None and "ran out" in refusal
    _long_ago(shared, dead, beat=True)
    assert new.admit("gpt-4o", 0.01) is None
    assert _held_in(shared, first) == 0.01


def test_a_call_cut_while_it_waits_to_be_admitted_lets_go_of_the_hold_written_after(
    shared: Database, workers: tuple[ModelGateway, ModelGateway], upstream: Upstream
) -> None:
    """The call's admission waits for its ticket's budget lock (another call of the ticket has it); the gateway cuts
    the gate's calls meanwhile (as its stop does), and the hold is written once the lock is free. The cut call's
    record lets go of it: the attempt's next call, its gate still open, is not refused against a budget nothing
    spent."""
    attempt, _ = _fan_out(shared, BUDGET)
    gateway = workers[0]
    with (
        open_gate(gateway, upstream, attempt, budget_usd=BUDGET, prices=PRICES) as gate,
        httpx.Client(base_url=gate.url, timeout=30) as agent,
        ThreadPoolExecutor(max_workers=1) as caller,
    ):
        gate.flush()  # its opening written
        with shared.session() as s:
            queries.lock_budget(s, attempt.ticket_id)  # on SQLite the session's turn is the lock
            cut = caller.submit(agent.post, "/openai/chat/completions", json=CHAT, headers=gate_key(gate))
            _wait_for_admission(gate)
            gateway.loop.call(gateway.cut(gate))
        assert cut.result().status_code == 500  # the agent sees its call fail
        assert held(gate) == 0.0
        again = agent.post("/openai/chat/completions", json=CHAT, headers=gate_key(gate))
    assert again.status_code == 200


def _wait_for_admission(gate: GatewayGate) -> None:
    """Until the gate's one call waits on its writer thread to be admitted: its place taken, then a moment for its
    small body to be read and its admission to begin."""
    wait_until(lambda: gate.handler.in_flight == 1, "the call never reached the gate")
    time.sleep(ADMISSION_BEGINS_SECONDS)


def test_an_old_gate_closing_leaves_the_holds_of_its_attempts_new_gate(
    shared: Database, workers: tuple[ModelGateway, ModelGateway], upstream: Upstream
) -> None:
    """The attempt's lease lapsed on one worker and another took it up: its old gate closes while a call of its new
    gate is in flight. The old gate lets go of what its own calls held (nothing), not of the new call's hold, which
    still counts against the ticket's budget."""
    first, second = _fan_out(shared, BUDGET)
    old = open_gate(workers[0], upstream, first, budget_usd=BUDGET, prices=PRICES)
    old.flush()  # its opening written before the new gate's
    with (
        old,
        open_gate(workers[1], upstream, first, budget_usd=BUDGET, prices=PRICES) as new,
        open_gate(workers[0], upstream, second, budget_usd=BUDGET, prices=PRICES) as two,
        httpx.Client(base_url=new.url, timeout=30) as agent_new,
        httpx.Client(base_url=two.url, timeout=30) as agent_two,
        in_flight(agent_new, new),
    ):
        holding = held(new)
        assert holding > BUDGET
        old.close()
        assert held(new) == holding
        assert agent_two.post("/openai/chat/completions", json=CHAT, headers=gate_key(two)).status_code == 402
