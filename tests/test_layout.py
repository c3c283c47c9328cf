"""The layers hold: each package imports only those below it, SQLAlchemy and psycopg2 only in db/, Celery only in
workers/, no module over 400 lines, and importing a package does nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top, each package and what it may import besides itself (ARCHITECTURE.md). The control plane
# (orchestrator) and the data plane (workers) never import each other: fleet/ wires them together.
MAY_IMPORT: dict[str, set[str]] = {
    "system": set(),
    "db": {"system"},
    "verification": {"system", "db"},
    "workers": {"system", "db", "verification"},
    "orchestrator": {"system", "db", "verification"},
    "fleet": {"system", "db", "verification", "workers", "orchestrator"},
}
LAYERS = tuple(MAY_IMPORT)
PACKAGES = LAYERS
ONLY_IN = {"sqlalchemy": "db", "alembic": "db", "psycopg2": "db", "celery": "workers", "kombu": "workers"}
MAX_LINES = 400


def package_modules() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def imported_modules(path: Path) -> set[str]:
    """Every absolute import in the file: at the top, inside functions and under TYPE_CHECKING alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def layer_breaches(path: Path) -> list[str]:
    """The imports of path that reach a package its own may not import."""
    package = path.relative_to(ROOT).parts[0]
    forbidden = set(LAYERS) - MAY_IMPORT[package] - {package}
    return sorted(name for name in imported_modules(path) if name.split(".")[0] in forbidden)


def test_the_layer_rule_reads_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from workers.queue import Dispatcher\n"
        "def f() -> None:\n    import orchestrator.views\n"
    )
    assert imported_modules(module) >= {"workers.queue", "orchestrator.views"}


def test_every_package_imports_only_from_the_layers_below_it() -> None:
    breaches = {str(p.relative_to(ROOT)): layer_breaches(p) for p in package_modules() if layer_breaches(p)}
    assert breaches == {}, "imports that break the layers (MAY_IMPORT)"


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_library_is_imported_only_in_its_layer(library: str) -> None:
    home = ONLY_IN[library]
    offenders = [
        str(path.relative_to(ROOT))
        for path in package_modules()
        if path.relative_to(ROOT).parts[0] != home and library in top_level(imported_modules(path))
    ]
    assert offenders == [], f"{library} may only be imported in {home}/"


def own_modules() -> list[Path]:
    """Every Python file the project wrote: the packages, the tests and the benchmarks (not vendored test data)."""
    tests = [p for p in sorted((ROOT / "tests").rglob("*.py")) if "data" not in p.relative_to(ROOT / "tests").parts[:1]]
    return [*package_modules(), *tests, *sorted((ROOT / "bench").rglob("*.py"))]


def long_modules() -> dict[str, int]:
    counts = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in own_modules()}
    return {name: lines for name, lines in sorted(counts.items()) if lines > MAX_LINES}


def test_no_module_is_over_400_lines() -> None:
    assert long_modules() == {}, f"split these modules (at most {MAX_LINES} lines)"


def test_importing_every_package_creates_no_files_and_no_engine(tmp_path: Path) -> None:
    modules = ("fleet.cli", "fleet.demo", "orchestrator.web.app", "workers.tasks", "workers.serve")
    code = "import " + ", ".join((*modules, "verification.verify", "db.queries", "db.migrate", "system.sandbox"))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "FLEET_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
