"""The chaos suite's workload and its checks: every ticket ends once, no infrastructure verdict, no agent run
repeated, and how long the fleet took to recover. The figures go to bench/results/chaos.{json,md}."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select

from db.lifecycle import LEASED_ATTEMPT, OPEN_ATTEMPT, WAITING_ATTEMPT
from db.models import Attempt, Event, Ticket, Verification, utcnow
from tests.conftest import Fleet

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
LEAKS = ("[SQL", "[parameters", "Traceback", "psycopg", "OperationalError")
ENDED = ("needs_review", "failed", "error", "cancelled")


# One process (it dies with its worker, as agents do): `start` in the ledger, the scripted agent, then `end`.
AGENT = (
    "import os, sys, time; from workers.agents.scripted import main; "
    "me = '.'.join(os.environ[k] for k in ('FLEET_TICKET_ID', 'FLEET_RUN', 'FLEET_ATTEMPT')); "
    "note = lambda word: open(sys.argv[1], 'a').write(f'{word} {me} {time.time():.2f}\\n'); "
    "note('start'); code = main(['sleep', sys.argv[2]]); note('end'); sys.exit(code)"
)


def agent_cmd(ledger: Path, seconds: float) -> str:
    """A scripted agent that fixes add() after `seconds`, writing `start` and, once finished, `end` lines to ledger.

    The ledger is the outside witness of repeated agent runs: a start after an end of the same attempt."""
    return shlex.join([sys.executable, "-P", "-c", AGENT, str(ledger), f"{seconds:g}"])


def submit(fleet: Fleet, count: int, seconds: float) -> list[int]:
    """count tickets on the sample repository, each fixed by an agent that takes `seconds`."""
    batch = [{"title": f"chaos {n}", "body": "tests/test_calc.py::test_add"} for n in range(count)]
    (fleet.tmp / "batch.json").write_text(json.dumps(batch))
    cmd = agent_cmd(fleet.tmp / "ledger", seconds)
    tickets = fleet.submit("--repo", "calc", "--attempts", "2", "--agent-cmd", cmd, "--file", "batch.json")
    return [t["id"] for t in tickets]


def repeated_agent_runs(ledger: Path) -> int:
    """Agent starts of an attempt after that attempt's agent had already finished once."""
    finished: set[str] = set()
    repeats = 0
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        kind, attempt = line.split()[:2]
        if kind == "start" and attempt in finished:
            repeats += 1
        elif kind == "end":
            finished.add(attempt)
    return repeats


def agents_in_hand(fleet: Fleet, owners: set[str]) -> int:
    """Agents started (by the ledger) on attempts the owners still hold as running: at work, or finished with an
    outcome the database has not recorded yet. A kill -9 in the moment between an agent's exit and its outcome's
    journal entry (the diff is being taken) loses that outcome, and the agent runs again."""
    return _held_agents(fleet, owners, ended_too=True)


def agents_at_work(fleet: Fleet, owners: set[str] | None = None) -> int:
    """Agents started and not finished (by the ledger), of attempts held by owners (any worker when None)."""
    return _held_agents(fleet, owners, ended_too=False)


def _held_agents(fleet: Fleet, owners: set[str] | None, *, ended_too: bool) -> int:
    """Running attempts held by owners (any worker when None) whose agent started by the ledger, and, unless
    ended_too, has not ended."""
    ledger = fleet.tmp / "ledger"
    lines = [line.split()[:2] for line in ledger.read_text().splitlines()] if ledger.exists() else []
    started = {who for kind, who in lines if kind == "start"}
    if not ended_too:
        started -= {who for kind, who in lines if kind == "end"}
    with fleet.db().session() as s:
        rows = s.execute(
            select(Attempt.ticket_id, Attempt.number, Attempt.lease_owner).where(Attempt.status == "running")
        ).all()
    return sum(
        1 for ticket, number, owner in rows if f"{ticket}.0.{number}" in started and (owners is None or owner in owners)
    )


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def open_attempts(fleet: Fleet) -> dict[int, tuple[str, str | None, str | None]]:
    """Every open attempt: (status, lease token, lease owner)."""
    with fleet.db().session() as s:
        rows = s.execute(
            select(Attempt.id, Attempt.status, Attempt.lease_token, Attempt.lease_owner).where(
                Attempt.status.in_([status.value for status in OPEN_ATTEMPT])
            )
        ).all()
    return {attempt_id: (status, token, owner) for attempt_id, status, token, owner in rows}


def in_status(fleet: Fleet, statuses: tuple[str, ...]) -> list[tuple[int, str | None]]:
    """(attempt id, lease owner) of the attempts in statuses."""
    return [(a, owner) for a, (status, _, owner) in open_attempts(fleet).items() if status in statuses]


def lapsed(fleet: Fleet) -> set[int]:
    """Leased attempts whose lease ran out: their worker died or gave them up while the database was away."""
    with fleet.db().session() as s:
        query = select(Attempt.id).where(
            Attempt.status.in_([status.value for status in LEASED_ATTEMPT]), Attempt.lease_expires_at < utcnow()
        )
        return set(s.scalars(query))


def time_to_recover(fleet: Fleet, dead_owners: set[str], timeout: float = 120.0) -> float:
    """Seconds from now until every attempt that was waiting, held by a dead worker or left with a lapsed lease is
    taken again (or ended). With none such, until any open attempt moves on: the fleet works again."""
    start, before = time.monotonic(), open_attempts(fleet)
    waiting = {s.value for s in WAITING_ATTEMPT}
    victims = {a for a, (status, _, owner) in before.items() if status in waiting or owner in dead_owners}
    victims |= lapsed(fleet) & set(before)
    while time.monotonic() - start < timeout:
        now = open_attempts(fleet)
        moved = {a for a, state in before.items() if now.get(a) != state}
        if (victims and victims <= moved) or (not victims and (moved or not before)):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"the fleet did not recover within {timeout:g}s")


@dataclass
class Outcome:
    fault: str
    tickets: int
    lost: int
    repeated_agent_runs: int
    infrastructure_verdicts: int
    recover_seconds: float


def settle_and_check(fleet: Fleet, fault: str, tickets: list[int], recover: float, timeout: float = 180) -> Outcome:
    """Wait for every ticket to end, then hold the guarantees and record the figures."""
    leased = {s.value for s in LEASED_ATTEMPT}
    try:
        wait_until(lambda: all(t in ENDED for t in statuses(fleet, tickets).values()), timeout, "every ticket to end")
    finally:
        still = {t: s for t, s in statuses(fleet, tickets).items() if s not in ENDED}
    with fleet.db().session() as s:
        verdicts = Counter(s.scalars(select(Verification.verdict)))
        ended = Counter(
            s.scalars(select(Event.ticket_id).where(Event.kind.in_([f"ticket_{status}" for status in ENDED])))
        )
        reasons = [r for (r,) in s.execute(select(Ticket.status_reason))] + [
            str(v) for (v,) in s.execute(select(Verification.reasons))
        ]
        repeats = int(s.scalar(select(func.coalesce(func.sum(Attempt.agent_repeats), 0))) or 0)
        held = s.scalar(select(func.count()).select_from(Attempt).where(Attempt.status.in_(leased)))
    outcome = Outcome(
        fault=fault,
        tickets=len(tickets),
        lost=len(still),
        repeated_agent_runs=repeated_agent_runs(fleet.tmp / "ledger") + repeats,
        infrastructure_verdicts=verdicts.get("error", 0),
        recover_seconds=round(recover, 1),
    )
    record(outcome)
    assert outcome.lost == 0, still
    assert {t: ended[t] for t in tickets} == dict.fromkeys(tickets, 1), "every ticket ends exactly once"
    assert outcome.infrastructure_verdicts == 0, verdicts
    assert not [r for r in reasons if any(leak in r for leak in LEAKS)]
    assert outcome.repeated_agent_runs == 0
    assert held == 0
    assert set(statuses(fleet, tickets).values()) == {"needs_review"}
    return outcome


def statuses(fleet: Fleet, tickets: list[int]) -> dict[int, str]:
    with fleet.db().session() as s:
        return {
            tid: status for tid, status in s.execute(select(Ticket.id, Ticket.status).where(Ticket.id.in_(tickets)))
        }


def record(outcome: Outcome) -> None:
    """Print the row and merge it into bench/results/chaos.json and chaos.md (one row per fault)."""
    print(f"\nchaos: {outcome}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "chaos.json"
    rows = {row["fault"]: row for row in (json.loads(path.read_text()) if path.exists() else [])}
    rows[outcome.fault] = asdict(outcome)
    path.write_text(json.dumps(list(rows.values()), indent=2) + "\n")
    lines = [
        "| fault | tickets | lost | repeated agent runs | time to recover |",
        "|---|---|---|---|---|",
        *(
            f"| {r['fault']} | {r['tickets']} | {r['lost']} | {r['repeated_agent_runs']} | {r['recover_seconds']} s |"
            for r in rows.values()
        ),
    ]
    (RESULTS / "chaos.md").write_text("\n".join(lines) + "\n")


def no_tracebacks(logs: list[Path]) -> list[str]:
    """Each traceback in the logs (a task that failed on a broker or database that was away): the line that logged
    it, then its last lines, where the exception is named."""
    found = []
    for path in logs:
        lines = path.read_text().splitlines() if path.exists() else []
        for n, line in enumerate(lines):
            if "Traceback" in line:
                end = next((k for k in range(n + 1, len(lines)) if not lines[k].startswith((" ", "Traceback"))), n)
                found.append(" | ".join([*lines[max(0, n - 1) : n], *lines[max(n, end - 2) : end + 1]]))
    return found
