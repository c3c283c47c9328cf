"""The merge queue's policy, as pure functions over plain data: which entries overlap, their order, and one pass.

A pass walks the queue in order and keeps a chain: the target's head, then each entry's build on the one before
(Zuul's speculative gating: entry k is verified on head + entries 1..k-1 while those are still being verified).
An entry whose build no longer sits on the chain is reset and built again; a failed entry is left out of the
chain, so the entries behind it are verified without it, and it is ejected only once it reaches the front with
its failure measured on the head itself (an entry ahead that fails later may have caused it). Conflict-aware
ordering builds independent entries first and never stacks an entry on an overlapping one that is still being
verified, so a failure ahead wastes fewer builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from db.lifecycle import MergeStatus
from system.globs import matches_any

_M = MergeStatus


@dataclass(frozen=True)
class Item:
    """One live entry as the planner sees it."""

    id: int
    status: MergeStatus
    files: frozenset[str]
    area: tuple[str, ...] = ()
    position: int | None = None
    parent: str | None = None
    build: str | None = None
    stale: bool = False  # the target changed one of its files since the diff's base: likelier to fail


@dataclass(frozen=True)
class Conflict:
    """The diff did not apply on the commit it was to be built on."""

    files: tuple[str, ...]


@dataclass(frozen=True)
class Build:
    """A build made in this pass: the commit it sits on, its own commit, and the entries ahead inside it."""

    parent: str
    sha: str
    stack: tuple[int, ...]


@dataclass
class Plan:
    """What one pass decided; the driver writes it and lands `land` with a compare-and-swap."""

    resets: list[int] = field(default_factory=list)
    builds: dict[int, Build] = field(default_factory=dict)
    conflicts: dict[int, tuple[str, Conflict]] = field(default_factory=dict)  # id -> (parent, conflict)
    ejects: list[int] = field(default_factory=list)  # failed at the front, on the head itself
    land: int | None = None
    order: list[int] = field(default_factory=list)


Builder = Callable[[str, Item], "str | Conflict"]  # (parent commit, entry) -> the build's commit, or a conflict


def overlaps(a: Item, b: Item) -> bool:
    """True when two entries touch the same file, or one touches a path in the other's area, or areas meet."""
    if a.files & b.files or set(a.area) & set(b.area):
        return True
    return any(matches_any(f, a.area) for f in b.files) or any(matches_any(f, b.area) for f in a.files)


def overlapping(items: Sequence[Item]) -> dict[int, list[int]]:
    """For each entry, the other entries it overlaps (what `fleet merge status` and `fleet review list` flag)."""
    return {a.id: [b.id for b in items if b.id != a.id and overlaps(a, b)] for a in items}


def ordered(items: Iterable[Item], conflict_aware: bool) -> list[Item]:
    """Built entries keep their places; the others follow in queue order, independent ones first when aware
    (an entry is dependent when it overlaps one ahead of it, or the target changed its files since its base)."""
    items = list(items)
    placed = sorted((i for i in items if i.position is not None), key=lambda i: (i.position or 0, i.id))
    free = sorted((i for i in items if i.position is None), key=lambda i: i.id)
    if not conflict_aware:
        return placed + free
    ahead: list[Item] = list(placed)
    independent: list[Item] = []
    dependent: list[Item] = []
    for item in free:
        risky = item.stale or any(overlaps(item, other) for other in ahead)
        (dependent if risky else independent).append(item)
        ahead.append(item)
    return placed + independent + dependent


def plan(head: str, items: Iterable[Item], slots: int, builder: Builder, conflict_aware: bool = True) -> Plan:
    """One pass over the live entries of one target branch (see the module's docstring)."""
    result = Plan()
    tip = head  # the commit the next build sits on
    chain: list[tuple[Item, MergeStatus]] = []  # the entries inside it, with their statuses
    busy = 0
    for item in ordered(items, conflict_aware):
        result.order.append(item.id)
        status = item.status
        if status != _M.WAITING and item.parent != tip:
            result.resets.append(item.id)
            status = _M.WAITING
        if status == _M.FAILED:
            if not chain:
                result.ejects.append(item.id)
            continue
        if status in (_M.PASSED, _M.BUILDING):
            if status == _M.PASSED and not chain and result.land is None:
                result.land = item.id
            busy += status == _M.BUILDING
            chain.append((item, status))
            tip = item.build or tip
            continue
        if busy >= slots or (conflict_aware and _blocked(item, chain)):
            continue
        built = builder(tip, item)
        if isinstance(built, Conflict):
            result.conflicts[item.id] = (tip, built)
            if not chain:
                result.ejects.append(item.id)  # it does not apply on the head itself
            continue
        result.builds[item.id] = Build(tip, built, tuple(i.id for i, _ in chain))
        busy += 1
        chain.append((item, _M.BUILDING))
        tip = built
    return result


def _blocked(item: Item, chain: list[tuple[Item, MergeStatus]]) -> bool:
    """Not stacked speculatively on an overlapping entry still being verified: wait until it has passed."""
    return any(status == _M.BUILDING and overlaps(item, other) for other, status in chain)


def diff_paths(diff: str) -> list[str]:
    """The paths a unified diff touches (both sides of a rename), in order of appearance."""
    found: dict[str, None] = {}
    for line in diff.splitlines():
        if line.startswith(("--- ", "+++ ")):
            name = line[4:].split("\t", 1)[0].strip().strip('"')
            if name != "/dev/null" and name[:2] in ("a/", "b/"):
                found.setdefault(name[2:], None)
    return list(found)
