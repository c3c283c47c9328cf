"""Registering repositories: their path, their test command, and the settings in their `.fleet.toml`."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db import queries
from db.engine import Database
from orchestrator import views
from orchestrator.errors import FleetError
from workers.git import GitError, git, is_git_repo

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TOML_KEYS = {"test_cmd", "setup_cmd", "protect", "hidden_tests", "agent", "allow_test_edits", "test_timeout"}


@dataclass
class RepoSpec:
    name: str
    path: str
    test_cmd: str = ""
    setup_cmd: str = ""
    protect: list[str] = field(default_factory=list)
    hidden_tests: str = ""
    agent: str = ""
    allow_test_edits: bool = False


def read_fleet_toml(repo: Path) -> dict[str, Any]:
    """`.fleet.toml` at the repository's HEAD (committed settings, never an agent's working copy)."""
    try:
        text = git("show", "HEAD:.fleet.toml", cwd=repo)
    except GitError:
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f".fleet.toml in {repo} is not valid TOML: {exc}") from None
    unknown = set(data) - TOML_KEYS
    if unknown:
        raise FleetError(f".fleet.toml in {repo}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


def _settings(spec: RepoSpec, toml: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    protect = spec.protect or toml.get("protect")
    if protect:
        settings["protect"] = list(protect)
    hidden = spec.hidden_tests or toml.get("hidden_tests")
    if hidden:
        hidden_path = Path(hidden).expanduser().resolve()
        if not hidden_path.is_dir():
            raise FleetError(f"--hidden-tests {hidden} is not a folder")
        settings["hidden_tests"] = str(hidden_path)
    if spec.allow_test_edits or toml.get("allow_test_edits"):
        settings["allow_test_edits"] = True
    if "test_timeout" in toml:
        settings["test_timeout"] = float(toml["test_timeout"])
    return settings


def register_repo(db: Database, spec: RepoSpec) -> dict[str, Any]:
    """Check and store a repository; returns its view."""
    if not NAME.match(spec.name):
        raise FleetError(f"repo name {spec.name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    path = Path(spec.path).expanduser().resolve()
    if not path.is_dir() or not is_git_repo(path):
        raise FleetError(f"{spec.path} is not a git repository")
    toml = read_fleet_toml(path)
    test_cmd = spec.test_cmd or toml.get("test_cmd", "")
    if not test_cmd.strip():
        raise FleetError("a repo needs --test-cmd (or test_cmd in its .fleet.toml)")
    with db.session() as s:
        repo = queries.add_repo(
            s,
            name=spec.name,
            source=str(path),
            test_cmd=test_cmd,
            setup_cmd=spec.setup_cmd or toml.get("setup_cmd") or None,
            default_agent=spec.agent or toml.get("agent", "shell"),
            settings=_settings(spec, toml),
        )
        return views.repo_view(repo)
