"""The scheduler's choice: priority first, then the repository with the least running work, within limits."""

from __future__ import annotations

from collections import Counter

from db.queries import Pending
from workers.scheduler import pick


def pending(*rows: tuple[int, int, int, str]) -> list[Pending]:
    return [Pending(attempt_id=a, priority=p, repo_id=r, agent=g) for a, p, r, g in rows]


def test_never_more_than_the_free_slots() -> None:
    waiting = pending(*[(n, 0, 1, "shell") for n in range(1, 11)])
    assert pick(waiting, 3, Counter(), {}, {}) == [1, 2, 3]
    assert pick(waiting, 0, Counter(), {}, {}) == []


def test_higher_priority_goes_first_whatever_its_age() -> None:
    waiting = pending((1, 0, 1, "shell"), (2, 0, 1, "shell"), (3, 5, 1, "shell"))
    assert pick(waiting, 2, Counter(), {}, {}) == [3, 1]


def test_a_small_repo_is_not_starved_by_a_big_one() -> None:
    big = [(n, 0, 1, "shell") for n in range(1, 501)]
    small = [(1000 + n, 0, 2, "shell") for n in range(5)]
    running = Counter({(1, "shell"): 4})
    chosen = pick(pending(*big, *small), 6, running, {}, {})
    assert [a for a in chosen if a >= 1000] == [1000, 1001, 1002, 1003, 1004]


def test_repo_and_agent_limits_hold() -> None:
    waiting = pending(*[(n, 0, 1, "claude-code" if n % 2 else "shell") for n in range(1, 21)])
    chosen = pick(waiting, 10, Counter({(1, "shell"): 1}), {1: 4}, {})
    assert len(chosen) == 3  # the repo runs one already and may run four
    chosen = pick(waiting, 10, Counter(), {}, {"claude-code": 2})
    assert sum(1 for a in chosen if a % 2) == 2
