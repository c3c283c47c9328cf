"""Registering repositories: their path, their test command, and the settings in their `.fleet.toml`."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from db import queries
from db.engine import Database
from db.specs import RepoSettings, RepoSpec, SpecError, copy_pair, parse
from db.spectypes import GRANTED, LIMITS_FROM_FILE, granted_names, limits_from_file
from orchestrator import views
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from orchestrator.sources import checked_source, settings_text
from orchestrator.tickets import CANCELLABLE as OPEN
from orchestrator.tickets import check_agent, check_text
from orchestrator.widening import AGENT_LIMITS, DEFAULT_LIMITS, Limits, refuse_widening
from system.credentials import SECRET_NAME

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The settings whose variables the workers pass on from their own environment, to the tests and to the agents.
PASSED_ON = ("test_env", "agent_env")


def read_fleet_toml(repo: str) -> RepoSettings:
    """`.fleet.toml` at the repository's HEAD (committed settings, never an agent's working copy)."""
    text = settings_text(repo)
    if text is None:
        return RepoSettings()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f".fleet.toml in {repo} is not valid TOML: {exc}") from None
    try:
        return parse(RepoSettings, data)
    except SpecError as exc:
        raise FleetError(f".fleet.toml in {repo}: {exc}") from None


def _refuse_secrets_from_file(source: str, from_file: dict[str, Any]) -> None:
    """A `.fleet.toml` is written by whoever commits to the repository (an agent's merged diff among them): it may
    not pass a variable named like a secret on (a model provider's key, a cloud's, a token); the operator may."""
    for setting in PASSED_ON:
        for name in from_file.get(setting, []):
            if SECRET_NAME.search(name):
                option = "--" + setting.replace("_", "-")
                raise FleetError(
                    f".fleet.toml in {source}: {setting} names {name}, a secret's name, which only the operator "
                    f"passes on (`fleet repo add` or `update` with {option} {name})"
                )


def check_shell_syntax(option: str, command: str) -> None:
    """Parse (never run) a command the way verification will run it, so a typo fails now, not on every ticket."""
    check_text(option, command)
    proc = subprocess.run(["/bin/sh", "-n", "-c", command], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise FleetError(f"cannot parse {option} {command!r}: {detail[0]}")


def _stored(settings: RepoSettings) -> dict[str, Any]:
    """The settings the database keeps, with the paths on this machine checked and made absolute."""
    changes: dict[str, Any] = {}
    if settings.hidden_tests:
        hidden_path = Path(settings.hidden_tests).expanduser().resolve()
        if not hidden_path.is_dir():
            raise FleetError(f"--hidden-tests {settings.hidden_tests} is not a folder")
        changes["hidden_tests"] = str(hidden_path)
    changes["copy_files"] = [_copy_file(item) for item in settings.copy_files]
    changes["read_paths"] = [str(Path(p).expanduser()) for p in settings.read_paths]
    for path in changes["read_paths"]:
        if not Path(path).is_absolute() or not Path(path).exists():
            raise FleetError(f"read_paths: {path} is not an absolute path that exists")
    if settings.agent_model:
        check_text("agent model", settings.agent_model)
    return settings.model_copy(update=changes).stored()


def _copy_file(item: str) -> str:
    """`SRC:DEST`: a file on the worker machines, copied to DEST inside every worktree and checkout."""
    source, dest = copy_pair(item)
    if not source or not dest or dest.startswith("/") or ".." in Path(dest).parts:
        raise FleetError(f"--copy-file {item!r}: use SRC:DEST with DEST a relative path inside the repository")
    source_path = Path(source).expanduser().resolve()
    if not source_path.is_file():
        raise FleetError(f"--copy-file {item!r}: {source} is not a file")
    return f"{source_path}:{dest}"


def register_repo(db: Database, spec: RepoSpec, agents: AgentRule, in_force: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Check and store a repository; returns its view. Its default agent is one the workers can run.

    A setting given in spec wins over the repository's `.fleet.toml`, which wins over the default; the file may
    lower the agent's limits below those in force (the operator's settings), never raise them."""
    if not NAME.match(spec.name):
        raise FleetError(f"repo name {spec.name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    check_text("path", spec.path)
    source = checked_source(spec.path)
    given = spec.given()
    from_file = {name: value for name, value in read_fleet_toml(source).given().items() if name not in given}
    _refuse_secrets_from_file(source, from_file)
    refuse_widening(source, from_file, in_force)
    settings = RepoSettings.model_validate(from_file | given)
    with db.session() as s:
        beside = _beside(_granted(given, {}), [name for name in AGENT_LIMITS if name in from_file])
        repo = queries.add_repo(s, name=spec.name, **_columns(source, settings, agents, beside))
        return views.repo_view(repo)


def _granted(given: dict[str, Any], before: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """The names shaped like a secret's that the operator passed on: those it gives now, for the settings it gives,
    and those it gave before for the others (a `.fleet.toml`'s never are)."""
    granted = {setting: list(before.get(setting, ())) for setting in PASSED_ON}
    granted |= {
        setting: [n for n in given[setting] if SECRET_NAME.search(n)] for setting in PASSED_ON if setting in given
    }
    return {setting: names for setting, names in granted.items() if names}


def _beside(granted: dict[str, list[str]], file_limits: list[str]) -> dict[str, Any]:
    """What the settings column holds beside the settings: the names the operator passed on, and the agent limits
    the repository's `.fleet.toml` set, which a worker takes only below its own (workers/pipeline/agent_plan.py)."""
    return ({GRANTED: granted} if granted else {}) | ({LIMITS_FROM_FILE: file_limits} if file_limits else {})


def _columns(source: str, settings: RepoSettings, agents: AgentRule, beside: dict[str, Any]) -> dict[str, Any]:
    """A repository's row, from settings checked as verification and the workers will use them."""
    if not settings.test_cmd.strip():
        on_disk = Path(source, ".fleet.toml").is_file()  # a URL names no folder: never a file
        read_from = f"; {source}/.fleet.toml is read as committed at HEAD: commit it" if on_disk else ""
        raise FleetError(f"a repo needs --test-cmd (or test_cmd in its .fleet.toml){read_from}")
    check_shell_syntax("--test-cmd", settings.test_cmd)
    if settings.setup_cmd:
        check_shell_syntax("--setup-cmd", settings.setup_cmd)
    check_agent(settings.agent, agents)
    return {
        "source": source,
        "test_cmd": settings.test_cmd,
        "setup_cmd": settings.setup_cmd or None,
        "default_agent": settings.agent,
        "settings": _stored(settings) | beside,
    }


def update_repo(db: Database, name: str, changes: RepoSettings, path: str | None, agents: AgentRule) -> dict[str, Any]:
    """Change the settings given in changes (and the path, if given); the others keep their stored values."""
    with db.session() as s:
        repo = queries.get_repo(s, name)
        columns = {"test_cmd": repo.test_cmd, "setup_cmd": repo.setup_cmd or "", "agent": repo.default_agent}
        current, source = RepoSettings.from_stored(repo.settings | columns), repo.source
        granted = _granted(changes.given(), granted_names(repo.settings))
        file_limits = [name for name in limits_from_file(repo.settings) if name not in changes.given()]
    if path is not None:
        check_text("path", path)
        source = checked_source(path)
    settings = RepoSettings.model_validate(current.given() | changes.given())
    with db.session() as s:
        columns = _columns(source, settings, agents, _beside(granted, file_limits))
        return views.repo_view(queries.update_repo(s, name, **columns))


def _refuse_unless_removable(s: queries.Session, name: str) -> None:
    queries.get_repo(s, name)
    open_ids = [ticket_id for ticket_id, _ in queries.repo_tickets_in(s, name, OPEN)]
    if open_ids:
        shown = ", ".join(map(str, open_ids[:10])) + (", ..." if len(open_ids) > 10 else "")
        raise FleetError(
            f"repo {name!r} has {views.plural(len(open_ids), 'open ticket')} ({shown}); "
            f"cancel them first (`fleet cancel --all --repo {name} --include-review`)"
        )


def check_removable(db: Database, name: str) -> None:
    """What remove_repo would refuse, found before anyone is asked to confirm the removal."""
    with db.session() as s:
        _refuse_unless_removable(s, name)


def remove_repo(db: Database, name: str) -> int:
    """Forget a repository and its finished tickets; refused while any ticket of it is open or waits for review."""
    with db.session() as s:
        _refuse_unless_removable(s, name)
        return queries.delete_repo(s, name)
