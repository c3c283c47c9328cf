"""SWE-smith style bug injection: small, deterministic mutations inside a project's functions.

Each mutation changes one expression of one function (a comparison, an arithmetic or boolean operator, a
constant, a returned value); `fleet tasks mine` keeps only those that make tests fail. Positions are the
AST's, which count UTF-8 bytes in a line: the splice works on bytes.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from system import pyast

SWAP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
SWAP_BINOP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
}


@dataclass(frozen=True)
class Mutation:
    """One injected bug: where, what it was, what it becomes."""

    path: str
    function: str
    line: int
    start: int  # byte offsets in the file
    end: int
    old: str
    new: str

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.new.encode() + source[self.end :]

    @property
    def description(self) -> str:
        return f"{self.path}:{self.line} in {self.function}(): `{self.old}` -> `{self.new}`"


def _mutated(node: ast.AST) -> ast.AST | None:
    """A changed copy of node, or None when no operator here mutates."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_COMPARE:
        return ast.Compare(node.left, [SWAP_COMPARE[type(node.ops[0])]()], node.comparators)
    if isinstance(node, ast.BinOp) and type(node.op) in SWAP_BINOP:
        return ast.BinOp(node.left, SWAP_BINOP[type(node.op)](), node.right)
    if isinstance(node, ast.BoolOp):
        return ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return ast.Constant(not node.value)
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) < 1000:
        return ast.Constant(node.value + 1)
    return None


def _offset(lines: list[bytes], line: int, col: int) -> int:
    return sum(len(text) for text in lines[: line - 1]) + col


def file_mutations(root: Path, path: str) -> Iterator[Mutation]:
    """Every mutation of the functions in one file, in source order."""
    source = (root / path).read_bytes()
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError):
        return
    lines = source.splitlines(keepends=True)
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if node is function or not isinstance(node, ast.expr):
                continue
            changed = _mutated(node)
            if changed is None:
                continue
            start = _offset(lines, node.lineno, node.col_offset)
            end = _offset(lines, node.end_lineno or node.lineno, node.end_col_offset or 0)
            old = source[start:end].decode("utf-8", errors="replace")
            new = ast.unparse(changed)
            if "\n" not in old and new != old:
                yield Mutation(path, function.name, node.lineno, start, end, old, new)


def candidates(root: Path, paths: Sequence[str], seed: int) -> list[Mutation]:
    """Every mutation of the given source files, in an order fixed by seed (one per position)."""
    found: dict[tuple[str, int], Mutation] = {}
    for path in sorted(paths):
        for mutation in file_mutations(root, path):
            found.setdefault((path, mutation.start), mutation)
    ordered = [found[key] for key in sorted(found)]
    random.Random(seed).shuffle(ordered)
    return ordered
