"""The layers hold: SQLAlchemy only in db/, Celery only in workers/, and importing a package does nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "workers", "verification", "db")
ONLY_IN = {"sqlalchemy": "db", "alembic": "db", "celery": "workers", "kombu": "workers"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_library_is_imported_only_in_its_layer(library: str) -> None:
    home = ONLY_IN[library]
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        if package != home
        for path in (ROOT / package).rglob("*.py")
        if library in imported_modules(path)
    ]
    assert offenders == [], f"{library} may only be imported in {home}/"


def test_verification_does_not_reach_into_the_database() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "verification").rglob("*.py")
        if "db" in imported_modules(p) and "from db.lifecycle import" not in p.read_text()
    ]
    assert offenders == []


def test_importing_every_package_creates_no_files_and_no_engine(tmp_path: Path) -> None:
    code = "import orchestrator.cli, workers.tasks, workers.serve, verification.verify, db.queries, db.migrate"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "FLEET_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_docker_compose_file_is_valid(tmp_path: Path) -> None:
    import os
    import shutil

    if shutil.which("docker-compose") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is required under CI to validate docker-compose.yml")
        pytest.skip("docker-compose is not installed")
    (ROOT / "repos").mkdir(exist_ok=True)
    try:
        proc = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    finally:
        (ROOT / "repos").rmdir()
    assert proc.returncode == 0, proc.stderr
