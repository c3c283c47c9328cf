"""A doctest that changes a module it imports: pytest runs a module's doctests (`--doctest-modules`) as tests of the
same session, before the tests of later folders, so `>>> calc.add = fixed` leaves the code under test rebound for
them while `calc.py` keeps its bug: a fix that exists only under test.

A doctest's examples may call the code and show what it returns; they may not rebind, delete or reach into the
namespace (`__dict__`, `vars()`) of a module they import. What they reach without naming it (a function of the
module that rebinds for them) is not seen.
"""

from __future__ import annotations

import ast

from system import pyast

NAMESPACE_READERS = {"setattr", "delattr", "vars"}


def module_rebinds(source: str) -> list[tuple[int, str]]:
    """(line, what) for each statement of the doctest code in source that changes a module the code imports."""
    try:
        tree = pyast.parse(source)
    except (SyntaxError, RecursionError, MemoryError):
        return []
    imported = _imported(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            found += [(node.lineno, _what(ast.unparse(t))) for t in targets if _root(t) in imported and _inner(t)]
        elif _reaches_namespace(node, imported):
            found.append((getattr(node, "lineno", 1), _what(ast.unparse(node))))
    return found


def _what(code: str) -> str:
    return (
        f"changes a module it imports ({code[:60]}), which lasts into the tests pytest runs after it: "
        "a doctest may call the code, not change it"
    )


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _inner(target: ast.expr) -> bool:
    """An attribute or item of the name, not the name itself (`calc = 1` rebinds only the doctest's own name)."""
    return isinstance(target, (ast.Attribute, ast.Subscript))


def _reaches_namespace(node: ast.AST, imported: set[str]) -> bool:
    """`setattr(calc, ...)`, `delattr(calc, ...)`, `vars(calc)`, `calc.__dict__`: a module's names, to change."""
    if isinstance(node, ast.Attribute):
        return node.attr == "__dict__" and _root(node.value) in imported
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
        return False
    return node.func.id in NAMESPACE_READERS and _root(node.args[0]) in imported
