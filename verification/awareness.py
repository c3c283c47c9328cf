"""Code that knows it is under test: the diff's non-test code reading the runner's state.

A fix that is active only while pytest runs (it reads PYTEST_CURRENT_TEST, looks for `pytest` in
`sys.modules`, or walks the stack for a caller named `test_*`) passes every test and leaves the bug in
production. The check reads the syntax tree of each changed non-test Python file and reports the lines the
diff added. Names are resolved through imports and aliases (`import os as o`, `from sys import modules`),
and strings are folded (`"PY" + "TEST_"`, f-strings of constants, `"".join([...])`) before they are compared.

What the check cannot read is found too: code run from text (`exec(open("impl.txt").read())`, whose file no check
reads as Python; a constant string is read as the code it is), and code that reaches the runner's objects without
naming them: walking the interpreter's objects (`gc.get_objects()`, where every test function is) or rebinding a
function's code (`test.__code__ = ...`), which turns a failing test into one that asserts nothing. The examples of a
doctest in a string are code too (pytest runs them with `--doctest-modules`, before the tests of later folders).
"""

from __future__ import annotations

import ast
import doctest
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from system import pyast
from system.files import read_within
from system.git import GitError, GitOutputTooLarge, checkout_git_bytes
from verification.doctest_rebind import module_rebinds
from verification.patch import unquote_path
from verification.source_encoding import misread, python_text

AWARE_RULE = "test-aware code"
MAX_SOURCE_BYTES = 8 * 2**20  # a Python file read for its syntax tree
RUNNER_KEY = re.compile(r"pytest|fleet|junit", re.IGNORECASE)
RUNNER_VARIABLE = re.compile(r"PYTEST_[A-Z_]+|FLEET_(?:JUNIT|REPORT|RESULTS)[A-Z_]*", re.IGNORECASE)
ENV_READERS = {("os", "getenv"), ("os", "environ"), ("os", "getenvb"), ("os", "environb"), ("posix", "environ")}
MODULE_TABLES = {("sys", "modules")}
FRAME_READERS = {
    ("sys", "_getframe"),
    ("sys", "_current_frames"),
    ("inspect", "stack"),
    ("inspect", "currentframe"),
    ("inspect", "getouterframes"),
    ("inspect", "trace"),
    ("traceback", "extract_stack"),
    ("traceback", "walk_stack"),
    ("traceback", "format_stack"),
    ("traceback", "print_stack"),
}
FRAME_ATTRIBUTES = {"f_back", "tb_frame", "gi_frame", "cr_frame"}
IMPORT_MACHINERY = {("sys", "meta_path"), ("sys", "path_hooks")}
HEAP_WALKERS = {("gc", "get_objects"), ("gc", "get_referrers"), ("gc", "get_referents")}
TEXT_RUNNERS = {"exec", "eval", "compile"}  # builtins that run (or make runnable) code given as text
MODULE_RUNNERS = {("runpy", "run_path"), ("runpy", "run_module"), ("marshal", "loads")}
CODE_ATTRIBUTE = "__code__"
DOCTEST_PROMPT = ">>>"
RUNNER_MODULES = {"pytest", "_pytest", "pluggy", "py"}
RUNNER_NAME = re.compile(r"(?<![a-z])_?py\.?test(?![a-z])", re.IGNORECASE)
STRING_TESTS = {"startswith", "endswith", "find", "rfind", "index", "count", "search", "match", "fullmatch"}
TOO_DEEP = "nests expressions deeper than the check can read (a thousand levels): write it flatter"
WATCHED = {"os", "sys", "inspect", "traceback", "posix", "importlib", "gc", "runpy", "marshal", "builtins"}


def aware_lines(source: str, path: str, lines: set[int], doctests_run: bool = True) -> list[str]:
    """Findings (`path:line: what`) in source on the given line numbers (all lines when empty); doctests_run: the
    test command runs modules' doctests (`--doctest-modules`), where one that changes a module it imports matters."""
    try:
        tree = pyast.parse(source)
    except SyntaxError:
        return []
    except (RecursionError, MemoryError):  # code nested deeper than the check reads: its lines count as added
        return [f"{path}:1: {TOO_DEEP}"]
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child._fleet_parent = parent  # type: ignore[attr-defined]
    finder = _Finder(_bound_names(tree), doctests_run)
    try:
        finder.visit(tree)
    except RecursionError:
        return [f"{path}:1: {TOO_DEEP}"]
    first = {line: what for line, what in reversed(finder.found)}  # one finding per line, the first
    return [f"{path}:{line}: {what}" for line, what in sorted(first.items()) if _added(line, finder.spans, lines)]


def _added(line: int, spans: dict[int, int], lines: set[int]) -> bool:
    """Whether the finding at line is on an added line (all count when none are named); a finding in a string
    spanning several lines (a doctest in a docstring) counts when any of them was added."""
    return not lines or not lines.isdisjoint(range(line, spans.get(line, line) + 1))


def added_lines(diff: str) -> dict[str, set[int]]:
    """The new-file line numbers each file's hunks add, by path (from a unified diff)."""
    added: dict[str, set[int]] = {}
    path, line = "", 0
    for text in diff.splitlines():
        if text.startswith("+++ "):
            path = unquote_path(text[4:].split("\t")[0]).removeprefix("b/")
        elif text.startswith("@@"):
            match = re.match(r"@@ -\S+ \+(\d+)", text)
            line = int(match.group(1)) if match else 0
        elif text.startswith("+") and path:
            added.setdefault(path, set()).add(line)
            line += 1
        elif not text.startswith("-") and not text.startswith("\\"):
            line += 1
    return added


def test_aware(
    checkout: Path, diff: str, is_test: Iterable[str], staged: bool = False, doctests_run: bool = True
) -> list[str]:
    """Findings in the lines the diff adds to its non-test Python files (is_test: the paths to skip). staged: each
    file is read as the diff left it, from the checkout's index, where code that ran in the checkout since (a diff's
    build script, which could move or pad the diff's lines) never reaches."""
    skip = set(is_test)
    added = {path: lines for path, lines in added_lines(diff).items() if path not in skip and path.endswith(".py")}
    sources = staged_sources(checkout, sorted(added)) if staged else {}
    found: list[str] = []
    for path, lines in sorted(added.items()):
        data = sources[path] if path in sources else source_bytes(checkout, path)
        if data is None:  # a link (checked where it points, if the diff added that) or too large
            continue
        if (encoding := misread(data)) is not None:
            found.append(
                f"{path}:1: declares the source encoding {encoding}, in which Python reads other code than the diff "
                "shows (a reviewer reads UTF-8): write the file in UTF-8"
            )
        found += aware_lines(python_text(data), path, lines, doctests_run)
    return found


def staged_sources(checkout: Path, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The index's version of each path, read in one git process (None: not a file of at most MAX_SOURCE_BYTES);
    {} when git could not say, for the caller to read the files instead."""
    asked = [path for path in paths if "\n" not in path]
    try:
        out = checkout_git_bytes(
            "cat-file", "--batch", cwd=checkout, input="".join(f":0:{path}\n" for path in asked).encode()
        )
    except (GitError, GitOutputTooLarge):
        return {}
    found: dict[str, bytes | None] = {}
    for path in asked:
        header, _, out = out.partition(b"\n")
        fields = header.split()
        if len(fields) != 3 or fields[1] != b"blob":
            found[path] = None  # missing from the index, or a link or submodule the diff made
            continue
        size = int(fields[2])
        blob, out = out[:size], out[size + 1 :]
        found[path] = blob if size <= MAX_SOURCE_BYTES else None
    return found


def source_text(checkout: Path, path: str) -> str | None:
    """The text of the Python file at path in a checkout hostile code ran in, as Python reads it: None for anything
    but a regular file of at most MAX_SOURCE_BYTES (never through a link, on the way or at the file, never waiting on
    a fifo)."""
    data = source_bytes(checkout, path)
    return python_text(data) if data is not None else None


def source_bytes(checkout: Path, path: str) -> bytes | None:
    """The bytes of the file at path, read as source_text reads them."""
    data = read_within(checkout, path, MAX_SOURCE_BYTES + 1)
    return data if data is not None and len(data) <= MAX_SOURCE_BYTES else None


def _bound_names(tree: ast.Module) -> set[str]:
    """The names the module itself defines or imports (its own `compile` is not the builtin)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


class _Finder(ast.NodeVisitor):
    def __init__(self, bound: set[str], doctests_run: bool) -> None:
        self.found: list[tuple[int, str]] = []
        self.doctests_run = doctests_run
        self.aliases: dict[str, tuple[str, ...]] = {}  # local name -> (module,) or (module, attribute)
        self.bound = bound
        self.spans: dict[int, int] = {}  # a finding's line -> the last line of the string it is in

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            self._runner_import(node, top)
            if top in WATCHED:
                self.aliases[alias.asname or top] = (top,)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._runner_import(node, (node.module or "").split(".")[0])
        if node.module in WATCHED:
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = (node.module, alias.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, self._resolve(node))
        if node.attr in FRAME_ATTRIBUTES:
            self.found.append((node.lineno, f"reads a caller's frame (.{node.attr})"))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        target = self.aliases.get(node.id)
        if target and len(target) == 2:
            self._check(node, target)

    def visit_Call(self, node: ast.Call) -> None:
        if fold(node) is not None:  # "".join([...]) of constants
            self._names_runner(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            owner, name = self._resolve(node.args[0]), fold(node.args[1])
            if owner and len(owner) == 1 and name is not None:
                self._check(node, (owner[0], name))
            if name in FRAME_ATTRIBUTES:
                self.found.append((node.lineno, f"reads a caller's frame (.{name})"))
        importer = (isinstance(func, ast.Name) and func.id == "__import__") or self._resolve(func) == (
            "importlib",
            "import_module",
        )
        module = fold(node.args[0]) if importer and node.args else None
        if module is not None and module.split(".")[0] in {*WATCHED, *RUNNER_MODULES} - {"importlib"}:
            self.found.append((node.lineno, f"imports {module} indirectly"))
        for arg in node.args[:1]:
            self._env_key(node, func, arg)
        resolved = self._resolve(func) or ()
        builtin = isinstance(func, ast.Name) and func.id in TEXT_RUNNERS and func.id not in self.bound
        if builtin or (resolved[:1] == ("builtins",) and resolved[1:2] and resolved[1] in TEXT_RUNNERS):
            self._runs_text(node)
        elif resolved in MODULE_RUNNERS:
            self.found.append((node.lineno, f"runs code no check reads ({'.'.join(resolved)})"))
        code = isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2
        if code and fold(node.args[1]) == CODE_ATTRIBUTE:
            self.found.append((node.lineno, "rebinds a function's code (__code__)"))
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Attribute) and t.attr == CODE_ATTRIBUTE for t in node.targets):
            self.found.append((node.lineno, "rebinds a function's code (.__code__ =)"))
        self.generic_visit(node)

    def _runs_text(self, node: ast.Call) -> None:
        """exec/eval/compile: a constant text is read as the code it is; any other text no check can read."""
        text = fold(node.args[0]) if node.args else None
        if text is None:
            self.found.append((node.lineno, "runs code from text no check reads (exec/eval/compile): write it as code"))
            return
        for finding in aware_lines(text, "", set(), self.doctests_run):
            self.found.append((node.lineno, f"runs code from a string that {finding.split(': ', 1)[1]}"))

    def visit_Subscript(self, node: ast.Subscript) -> None:
        owner = self._resolve(node.value)
        if owner in ENV_READERS:
            self._key(node, node.slice)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and DOCTEST_PROMPT in node.value:
            self._doctest(node, node.value)
        if not self._names_runner_variable(node) and not _is_docstring(node):
            self._names_runner(node)

    def _doctest(self, node: ast.Constant, text: str) -> None:
        """The examples of a doctest in a string (a docstring, a `__test__` entry): code pytest runs with
        `--doctest-modules`, read as the code it is."""
        try:
            examples = doctest.DocTestParser().get_examples(text)
        except ValueError:  # not a doctest doctest would run
            return
        code = "\n".join(example.source for example in examples)
        findings = [finding.split(": ", 1)[1] for finding in aware_lines(code, "", set(), self.doctests_run)]
        rebinds = [what for _, what in module_rebinds(code)] if self.doctests_run else []
        for what in [*findings, *rebinds]:
            self.found.append((node.lineno, f"runs a doctest that {what}"))
            self.spans[node.lineno] = max(self.spans.get(node.lineno, 0), node.end_lineno or node.lineno)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self._names_runner_variable(node):
            return
        if fold(node) is not None:
            self._names_runner(node)  # a folded constant: its parts say less than the whole
        else:
            self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        if not self._names_runner_variable(node) and not _is_docstring(node):
            self._names_runner(node)

    def _names_runner_variable(self, node: ast.expr) -> bool:
        value = fold(node)
        if value is None or not RUNNER_VARIABLE.search(value):
            return False
        self.found.append((node.lineno, f"names the runner's variable {RUNNER_VARIABLE.search(value).group(0)}"))  # type: ignore[union-attr]
        return True

    def _names_runner(self, node: ast.expr) -> None:
        """A string naming the runner that something is tested against (`"pytest" in sys.argv[0]`)."""
        value = fold(node)
        if value is not None and RUNNER_NAME.search(value) and _tested_against(node):
            self.found.append((node.lineno, f"names the test runner ({value[:40]!r})"))

    def _runner_import(self, node: ast.stmt, top: str) -> None:
        if top in RUNNER_MODULES:
            self.found.append((node.lineno, f"imports the test runner's module {top}"))

    def _env_key(self, node: ast.Call, func: ast.expr, arg: ast.expr) -> None:
        owner = self._resolve(func)
        reads_env = owner in ENV_READERS or (owner and owner[:2] in ENV_READERS and len(owner) == 3)
        if reads_env or (isinstance(func, ast.Attribute) and self._resolve(func.value) in ENV_READERS):
            self._key(node, arg)

    def _key(self, node: ast.AST, key: ast.expr) -> None:
        value = fold(key)
        if value is not None and RUNNER_KEY.search(value):
            self.found.append((getattr(node, "lineno", 0), f"reads the runner's environment variable {value}"))

    def _check(self, node: ast.AST, target: tuple[str, ...] | None) -> None:
        if target is None or len(target) < 2:
            return
        pair = (target[0], target[1])
        line = getattr(node, "lineno", 0)
        if pair in MODULE_TABLES and not _own_module_lookup(node):
            self.found.append((line, "looks up loaded modules (sys.modules)"))
        elif pair in FRAME_READERS:
            self.found.append((line, f"inspects the call stack ({pair[0]}.{pair[1]})"))
        elif pair in IMPORT_MACHINERY:
            self.found.append((line, f"reaches into the import machinery ({pair[0]}.{pair[1]})"))
        elif pair in HEAP_WALKERS:
            self.found.append((line, f"walks the interpreter's objects, the runner's among them ({pair[0]}.{pair[1]})"))

    def _resolve(self, node: ast.expr) -> tuple[str, ...] | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self._resolve(node.value)
            return (*owner, node.attr) if owner else None
        return None


def _tested_against(node: ast.AST) -> bool:
    parent = getattr(node, "_fleet_parent", None)
    if isinstance(parent, ast.Compare):
        return True
    called = parent.func if isinstance(parent, ast.Call) else None
    return isinstance(called, ast.Attribute) and called.attr in STRING_TESTS and node in parent.args  # type: ignore[union-attr]


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(getattr(node, "_fleet_parent", None), ast.Expr)


def _own_module_lookup(node: ast.AST) -> bool:
    """`sys.modules[__name__]`: a module finding itself, which tells nothing about the runner."""
    parent = getattr(node, "_fleet_parent", None)
    return isinstance(parent, ast.Subscript) and isinstance(parent.slice, ast.Name) and parent.slice.id == "__name__"


def fold(node: ast.expr) -> str | None:
    """The string a constant expression evaluates to (concatenation, f-strings, join, case), or None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left), fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [fold(v.value) if isinstance(v, ast.FormattedValue) else fold(v) for v in node.values]
        return "".join(p for p in parts if p is not None) if all(p is not None for p in parts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _fold_method(node)
    return None


def _fold_method(node: ast.Call) -> str | None:
    assert isinstance(node.func, ast.Attribute)
    owner = fold(node.func.value)
    if owner is None:
        return None
    if node.func.attr == "join" and node.args and isinstance(node.args[0], (ast.List, ast.Tuple)):
        parts = [fold(e) for e in node.args[0].elts]
        return owner.join(p for p in parts if p is not None) if all(p is not None for p in parts) else None
    if node.func.attr in ("upper", "lower", "strip") and not node.args:
        return str(getattr(owner, node.func.attr)())
    return None
