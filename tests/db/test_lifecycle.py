"""The transition tables: legal moves pass, illegal ones raise, and no status is written anywhere else."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from db import lifecycle
from db.lifecycle import (
    ATTEMPT,
    MERGE,
    RUN,
    TICKET,
    AttemptStatus,
    IllegalTransition,
    MergeStatus,
    RunStatus,
    Table,
    TicketStatus,
)
from db.models import Base

ROOT = Path(__file__).resolve().parent.parent.parent
TABLES: list[Table[TicketStatus] | Table[RunStatus] | Table[AttemptStatus] | Table[MergeStatus]] = [
    TICKET,
    RUN,
    ATTEMPT,
    MERGE,
]
ENUMS: dict[str, type[Enum]] = {
    "ticket": TicketStatus,
    "run": RunStatus,
    "attempt": AttemptStatus,
    "merge entry": MergeStatus,
}


@dataclass
class Row:
    """A plain row with an id and a status, as move() sees an ORM row."""

    id: int
    status: str


def every_edge() -> Iterator[tuple[str, Enum, Enum]]:
    for rules in TABLES:
        for edge in rules.edges:
            yield rules.kind, edge.source, edge.target


@pytest.mark.parametrize(("kind", "source", "target"), list(every_edge()), ids=lambda v: getattr(v, "value", v))
def test_every_legal_move_passes(kind: str, source: Enum, target: Enum) -> None:
    row = Row(1, source.value)
    lifecycle.move(row, target)  # type: ignore[type-var]
    assert row.status == target.value


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (TicketStatus.APPROVED, TicketStatus.NEEDS_REVIEW, "ticket cannot go from approved to needs_review"),
        (MergeStatus.MERGED, MergeStatus.WAITING, "merge entry cannot go from merged to waiting"),
        (MergeStatus.WAITING, MergeStatus.PASSED, "merge entry cannot go from waiting to passed"),
        (TicketStatus.FAILED, TicketStatus.NEEDS_REVIEW, "ticket cannot go from failed to needs_review"),
        (RunStatus.PASSED, RunStatus.FAILED, "run cannot go from passed to failed"),
        (AttemptStatus.FINISHED, AttemptStatus.QUEUED, "attempt cannot go from finished to queued"),
        (AttemptStatus.QUEUED, AttemptStatus.VERIFYING, "attempt cannot go from queued to verifying"),
    ],
)
def test_illegal_moves_raise_and_leave_the_row_alone(old: Enum, new: Enum, message: str) -> None:
    row = Row(1, old.value)
    with pytest.raises(IllegalTransition, match=f"^{message}$"):
        lifecycle.move(row, new)  # type: ignore[type-var]
    assert row.status == old.value


@pytest.mark.parametrize(
    ("rules", "terminal"),
    [
        (TICKET, set()),  # an approved ticket the merge queue ejects is rejected, and may be reopened
        (RUN, set()),
        (ATTEMPT, {AttemptStatus.FINISHED, AttemptStatus.CANCELLED}),
        (MERGE, {MergeStatus.MERGED, MergeStatus.EJECTED}),
    ],
    ids=lambda v: getattr(v, "kind", ""),
)
def test_terminal_statuses_have_no_exits(rules: Table[TicketStatus], terminal: set[Enum]) -> None:
    statuses = list(ENUMS[rules.kind])
    assert {s for s in statuses if not rules.exits(s)} == terminal
    for end in terminal:
        for other in statuses:
            if other != end:
                with pytest.raises(IllegalTransition):
                    rules.check(end, other)  # type: ignore[arg-type]


@pytest.mark.parametrize("rules", TABLES, ids=lambda t: t.kind)
def test_every_status_is_reachable_from_the_initial_one(rules: Table[TicketStatus]) -> None:
    seen, frontier = {rules.initial}, [rules.initial]
    while frontier:
        for target in rules.exits(frontier.pop()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(ENUMS[rules.kind])


def test_bulk_gives_the_legal_sources_among_those_asked_and_refuses_when_none_is() -> None:
    leased = (AttemptStatus.RUNNING, AttemptStatus.VERIFYING)
    assert lifecycle.bulk(AttemptStatus.VERIFY_QUEUED, among=leased) == (
        ["running", "verifying"],
        {"status": "verify_queued"},
    )
    assert lifecycle.bulk(AttemptStatus.RUNNING) == (["queued"], {"status": "running"})
    with pytest.raises(IllegalTransition, match="attempt cannot go from finished to running"):
        lifecycle.bulk(AttemptStatus.RUNNING, among=[AttemptStatus.FINISHED])


def test_a_lease_expiry_puts_each_leased_status_back_in_line() -> None:
    assert ATTEMPT.moves("expire") == {
        AttemptStatus.RUNNING: AttemptStatus.QUEUED,
        AttemptStatus.VERIFYING: AttemptStatus.VERIFY_QUEUED,
    }


def test_the_commands_checks_come_from_the_table() -> None:
    assert lifecycle.sources(TicketStatus.QUEUED, "retry") == (
        TicketStatus.FAILED,
        TicketStatus.ERROR,
        TicketStatus.CANCELLED,
        TicketStatus.REJECTED,
    )
    assert set(lifecycle.sources(TicketStatus.CANCELLED, "cancel")) == {
        TicketStatus.QUEUED,
        TicketStatus.RUNNING,
        TicketStatus.NEEDS_REVIEW,
        TicketStatus.REJECTED,
    }
    assert lifecycle.sources(TicketStatus.APPROVED, "approve") == (TicketStatus.NEEDS_REVIEW,)
    lifecycle.require(Row(7, "failed"), TicketStatus.QUEUED, "retry")
    refusal = "^ticket 7 is approved; only failed, error, cancelled or rejected tickets retry$"
    with pytest.raises(IllegalTransition, match=refusal):
        lifecycle.require(Row(7, "approved"), TicketStatus.QUEUED, "retry")
    with pytest.raises(IllegalTransition, match="^not now$"):
        lifecycle.require(Row(7, "queued"), TicketStatus.APPROVED, "approve", "not now")


# --- no status is written outside db/lifecycle.py -------------------------------------------------

STATUS_ROWS = {mapper.class_.__name__ for mapper in Base.registry.mappers if "status" in mapper.columns}
WRITERS = {"values", "insert", "update", *STATUS_ROWS}  # .values(status=...), Attempt(status=...)


def status_writes(source: str) -> list[int]:
    """Lines that assign a `.status` attribute, or pass `status=` to an UPDATE, INSERT or a status row."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source)) if _assigns_status(node) or _passes_status(node))


def _assigns_status(node: ast.AST) -> bool:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    return any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets)


def _passes_status(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    if _callee(node.func) == "setattr":
        return len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "status"
    return _callee(node.func) in WRITERS and any(k.arg == "status" for k in node.keywords)


def _callee(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def modules() -> list[Path]:
    packages = [p.parent for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"]
    return sorted(path for package in packages for path in package.rglob("*.py"))


def test_the_guard_sees_every_kind_of_status_write() -> None:
    source = (
        "ticket.status = 'x'\n"
        "s.execute(update(Attempt).values(status='x'))\n"
        "Attempt(run_id=1, status='queued')\n"
        "setattr(run, 'status', 'x')\n"
        "page(request, status=404)\n"  # not a status row: allowed
    )
    assert status_writes(source) == [1, 2, 3, 4]


def test_no_module_writes_a_status_but_the_lifecycle() -> None:
    assert {"Ticket", "Run", "Attempt", "MergeEntry"} <= STATUS_ROWS
    found = modules()
    assert len(found) > 50 and ROOT / "db" / "queries" / "leases.py" in found
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in found
        if path != ROOT / "db" / "lifecycle.py"
        for line in status_writes(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
