"""The scheduler: sends waiting attempts only when a slot is free, by priority, fairly across repositories.

Backpressure lives here: the broker never holds more work than the live workers have slots, so ten thousand
queued tickets cost ten thousand rows, not ten thousand messages, and a late high-priority ticket still
overtakes the backlog. Limits per repository (repo setting `max_concurrency`) and per agent
(FLEET_AGENT_LIMITS) hold across every worker, because one scheduler runs at a time (a database lock).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from db import queries
from db.engine import Database
from db.lifecycle import AttemptStatus
from system.settings import Settings

if TYPE_CHECKING:
    from workers.queue import Dispatcher

LOOKAHEAD = 4
UNLIMITED = 1 << 30  # pending rows read per free slot, so limits can skip past a blocked repo or agent


def pick(
    waiting: list[queries.Pending],
    free: int,
    running: Counter[tuple[int, str]],
    repo_limits: Mapping[int, int],
    agent_limits: Mapping[str, int],
) -> list[int]:
    """Choose up to `free` attempts: highest priority first; among equals, the repo with least running work."""
    by_repo: dict[int, deque[queries.Pending]] = defaultdict(deque)
    for p in sorted(waiting, key=lambda p: (-p.priority, p.attempt_id)):
        by_repo[p.repo_id].append(p)
    per_repo = Counter(repo for repo, _ in running.elements())
    per_agent = Counter(agent for _, agent in running.elements())
    chosen: list[int] = []
    while len(chosen) < free:
        heads = [q[0] for q in by_repo.values() if q]
        open_heads = [p for p in heads if per_repo[p.repo_id] < repo_limits.get(p.repo_id, UNLIMITED)]
        if not open_heads:
            break
        best = min(open_heads, key=lambda p: (-p.priority, per_repo[p.repo_id], p.attempt_id))
        by_repo[best.repo_id].popleft()
        if per_agent[best.agent] >= agent_limits.get(best.agent, UNLIMITED):
            continue  # this agent is at its limit; the attempt waits for a later pass
        chosen.append(best.attempt_id)
        per_repo[best.repo_id] += 1
        per_agent[best.agent] += 1
    return chosen


def plan(s: queries.Session, settings: Settings) -> list[tuple[int, AttemptStatus]]:
    """One pass inside the caller's transaction: choose attempts for the free slots and mark them sent.

    The caller sends the returned pairs once the transaction has committed.
    """
    return sent(s, choose(s, settings))


def sent(s: queries.Session, attempt_ids: list[int]) -> list[tuple[int, AttemptStatus]]:
    """Mark chosen attempts sent, in the caller's transaction; the pairs to send once it has committed."""
    queries.mark_dispatched(s, attempt_ids)
    return [(attempt_id, AttemptStatus.QUEUED) for attempt_id in attempt_ids]


def choose(s: queries.Session, settings: Settings) -> list[int]:
    """The waiting attempts to run in the free slots, in the caller's transaction, which holds the scheduling lock
    from here on. Not marked sent: a caller that claims some of them at once marks only the others (sent())."""
    queries.scheduling_lock(s)
    capacity = queries.live_slots(s, stale_seconds=3 * settings.heartbeat_seconds + settings.reconcile_seconds)
    if settings.max_concurrency:
        capacity = min(capacity, settings.max_concurrency)
    running = Counter(queries.in_flight(s))
    free = capacity - sum(running.values())
    if free <= 0:
        return []
    waiting = queries.pending(s, per_repo=free * LOOKAHEAD)
    if not waiting:  # an idle fleet's reconcilers pass every second: nothing more to read
        return []
    return pick(waiting, free, running, queries.repo_limits(s), settings.agent_limits)


def schedule(db: Database, dispatcher: Dispatcher, settings: Settings) -> int:
    """One pass in its own transaction: fill free slots with waiting attempts; returns how many were sent."""
    with db.session() as s:
        chosen = plan(s, settings)
    return dispatcher.send(chosen)
