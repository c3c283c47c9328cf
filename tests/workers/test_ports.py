"""Port blocks: disjoint across holders, consecutive blocks for repos that need more ports, freed on exit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from verification.environment import PortAllocator, PortBlock


def _ports(block: PortBlock) -> set[int]:
    return set(range(block.base, block.base + block.count))


def test_holders_get_disjoint_ranges_and_a_repo_can_ask_for_more_than_one_block(tmp_path: Path) -> None:
    allocator = PortAllocator(tmp_path / "ports", first_port=30_000, block_size=10, blocks=6)
    other_process = PortAllocator(tmp_path / "ports", first_port=30_000, block_size=10, blocks=6)
    with allocator.lease() as one, other_process.lease(25) as wide, allocator.lease(10) as two:
        assert (one.count, wide.count, two.count) == (10, 30, 10)
        assert wide.env() == {"FLEET_PORT_BASE": str(wide.base), "FLEET_PORT_COUNT": "30"}
        assert not (_ports(one) & _ports(wide) or _ports(one) & _ports(two) or _ports(wide) & _ports(two))
        with pytest.raises(RuntimeError, match="no 2 free consecutive port blocks of the 6"), allocator.lease(20, 0.3):
            pass
    with allocator.lease(60) as everything:
        assert _ports(everything) == set(range(30_000, 30_060))
    with pytest.raises(RuntimeError, match="70 ports per slot is more than all 60 ports"), allocator.lease(70):
        pass


def test_each_search_starts_after_the_block_taken_last_and_wraps_around(tmp_path: Path) -> None:
    """Next fit: a process of hundreds of slots does not try every block another process holds at each lease."""
    allocator = PortAllocator(tmp_path / "ports", first_port=30_000, block_size=10, blocks=6)
    bases = []
    for _ in range(6):
        with allocator.lease() as block:
            bases.append(block.base)
    assert sorted(bases) == list(range(30_000, 30_060, 10))
    assert all((b - a) % 60 == 10 for a, b in zip(bases, bases[1:], strict=False))


def test_many_threads_leasing_at_once_get_disjoint_blocks_past_another_process(tmp_path: Path) -> None:
    """The lock files are opened outside the process's lock: a block marked held by one thread is never given to
    another while it is being locked, and a block another process holds is passed over."""
    allocator = PortAllocator(tmp_path / "ports", first_port=30_000, block_size=10, blocks=40)
    other_process = PortAllocator(tmp_path / "ports", first_port=30_000, block_size=10, blocks=40)
    taken: list[set[int]] = []
    all_in = threading.Barrier(30)

    def lease() -> None:
        with allocator.lease(wait_seconds=5) as block:
            taken.append(_ports(block))
            all_in.wait(timeout=10)  # every thread holds its block at once

    with other_process.lease(100) as outside:
        threads = [threading.Thread(target=lease) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(taken) == 30 and len(set().union(*taken)) == 30 * 10  # no port given twice
    assert not set().union(*taken) & _ports(outside)
