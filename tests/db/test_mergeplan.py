"""The merge queue's pure policy: speculative chains, ejection at the front, resets, conflict-aware order."""

from __future__ import annotations

from dataclasses import replace

from db.lifecycle import MergeStatus
from db.mergeplan import Conflict, Item, Plan, diff_paths, ordered, overlapping, plan

W, B, P, F = MergeStatus.WAITING, MergeStatus.BUILDING, MergeStatus.PASSED, MergeStatus.FAILED


def item(id: int, *files: str, area: tuple[str, ...] = ()) -> Item:
    return Item(id, W, frozenset(files or (f"f{id}.py",)), area)


def builder(conflicts: set[int] = frozenset()):  # type: ignore[no-untyped-def,assignment]
    def build(parent: str, it: Item) -> str | Conflict:
        return Conflict((f"f{it.id}.py",)) if it.id in conflicts else f"{parent}+{it.id}"

    return build


def apply(items: list[Item], result: Plan) -> list[Item]:
    """What the driver writes: the planner's decisions on the rows."""
    out = []
    for it in items:
        if it.id in result.ejects:
            continue
        if it.id in result.resets:
            it = replace(it, status=W, parent=None, build=None, position=None)
        if it.id in result.builds:
            b = result.builds[it.id]
            it = replace(it, status=B, parent=b.parent, build=b.sha, position=100 + len(out))
        if it.id in result.conflicts:
            it = replace(it, status=F, parent=result.conflicts[it.id][0], position=100 + len(out))
        out.append(it)
    return out


def test_entries_are_built_speculatively_on_the_ones_ahead_up_to_the_slots() -> None:
    result = plan("h", [item(1), item(2), item(3), item(4)], slots=3, builder=builder())
    assert {i: (b.parent, b.sha, b.stack) for i, b in result.builds.items()} == {
        1: ("h", "h+1", ()),
        2: ("h+1", "h+1+2", (1,)),
        3: ("h+1+2", "h+1+2+3", (1, 2)),
    }
    assert result.land is None and not result.resets


def test_one_slot_verifies_one_at_a_time() -> None:
    result = plan("h", [item(1), item(2)], slots=1, builder=builder())
    assert list(result.builds) == [1]


def test_the_front_lands_and_a_failure_behind_it_waits_while_the_next_is_rebuilt_without_it() -> None:
    items = apply([item(1), item(2), item(3)], plan("h", [item(1), item(2), item(3)], 3, builder()))
    items = [replace(items[0], status=P), replace(items[1], status=F), items[2]]
    result = plan("h", items, 3, builder())
    assert result.land == 1 and result.ejects == []  # 2 may have failed because of 1: it waits for the front
    assert result.resets == [3] and result.builds[3].parent == "h+1"  # 3 is verified without the failure


def test_a_failure_is_ejected_at_the_front_and_those_behind_are_rebuilt_without_it() -> None:
    items = apply([item(1), item(2), item(3)], plan("h", [item(1), item(2), item(3)], 3, builder()))
    items = [replace(items[0], status=F), items[1], items[2]]
    result = plan("h", items, 3, builder())
    assert result.ejects == [1]
    assert result.resets == [2, 3]
    assert {i: b.parent for i, b in result.builds.items()} == {2: "h", 3: "h+2"}


def test_a_failure_behind_a_failure_is_rebuilt_once_the_one_ahead_leaves() -> None:
    items = apply([item(1), item(2)], plan("h", [item(1), item(2)], 3, builder()))
    items = [replace(items[0], status=F), replace(items[1], status=F)]
    result = plan("h", items, 3, builder())
    assert result.ejects == [1] and result.resets == [2] and result.builds[2].parent == "h"


def test_a_moved_head_resets_every_build() -> None:
    items = apply([item(1), item(2)], plan("h", [item(1), item(2)], 3, builder()))
    result = plan("human", items, 3, builder())
    assert result.resets == [1, 2]
    assert {i: b.sha for i, b in result.builds.items()} == {1: "human+1", 2: "human+1+2"}


def test_a_conflict_on_the_head_is_ejected_at_once_and_one_on_the_stack_waits() -> None:
    result = plan("h", [item(1), item(2)], 3, builder({1}))
    assert result.ejects == [1] and result.builds[2].parent == "h"
    result = plan("h", [item(1), item(2), item(3)], 3, builder({2}))
    assert result.ejects == [] and result.conflicts[2][0] == "h+1" and result.builds[3].parent == "h+1"


def test_conflict_aware_order_puts_independent_entries_first() -> None:
    items = [item(1, "a.py"), item(2, "a.py"), item(3, "b.py"), item(4, "c.py", area=("a*",))]
    assert [i.id for i in ordered(items, conflict_aware=False)] == [1, 2, 3, 4]
    assert [i.id for i in ordered(items, conflict_aware=True)] == [1, 3, 2, 4]
    assert overlapping(items) == {1: [2, 4], 2: [1, 4], 3: [], 4: [1, 2]}


def test_an_overlapping_entry_is_not_stacked_on_one_still_being_verified() -> None:
    items = [item(1, "a.py"), item(2, "a.py"), item(3, "b.py")]
    first = plan("h", items, 8, builder())
    assert list(first.builds) == [1, 3]  # 2 waits for 1
    built = apply(items, first)
    second = plan("h", [replace(built[0], status=P), *built[1:]], 8, builder())
    assert second.land == 1 and second.builds[2].parent == "h+1+3"
    blind = plan("h", items, 8, builder(), conflict_aware=False)
    assert list(blind.builds) == [1, 2, 3]


def test_diff_paths_reads_both_sides_and_skips_dev_null() -> None:
    diff = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
        "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+c\n"
    )
    assert diff_paths(diff) == ["x.py", "new.py"]


def test_an_entry_whose_files_the_target_changed_since_its_base_goes_after_the_fresh_ones() -> None:
    items = [replace(item(1, "a.py"), stale=True), item(2, "b.py"), item(3, "c.py")]
    assert [i.id for i in ordered(items, conflict_aware=True)] == [2, 3, 1]
    assert [i.id for i in ordered(items, conflict_aware=False)] == [1, 2, 3]
