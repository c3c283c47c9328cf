"""Registering repositories: their path, their test command, and the settings in their `.fleet.toml`."""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db import queries
from db.engine import Database
from orchestrator import views
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from orchestrator.tickets import check_agent, check_text
from system.git import GitError, git, is_git_repo

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
HOST_PORT = re.compile(r"^(?:(?:\*\.)?(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")
TOML_TYPES: dict[str, type | tuple[type, ...]] = {
    "test_cmd": str,
    "setup_cmd": str,
    "protect": list,
    "hidden_tests": str,
    "agent": str,
    "allow_test_edits": bool,
    "test_timeout": (int, float),
    "copy_files": list,
    "max_concurrency": int,
    "daily_budget_usd": (int, float),
    "test_network": bool,
    "env_cache": bool,
    "env_key_files": list,
    "ports": int,
    "agent_sandbox": bool,
    "agent_network": str,
    "agent_model": str,
    "agent_args": list,
    "agent_env": list,
    "agent_hosts": list,
    "test_env": list,
    "read_paths": list,
}
TOML_KEYS = set(TOML_TYPES)
MAX_PORTS = 10_000
AGENT_NETWORKS = ("none", "on")


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
    copy_files: list[str] = field(default_factory=list)
    max_concurrency: int = 0
    daily_budget_usd: float = 0.0
    test_network: bool = False
    env_cache: bool = True
    env_key_files: list[str] = field(default_factory=list)
    ports: int = 0
    agent_sandbox: bool | None = None
    agent_network: str = ""
    agent_model: str = ""
    agent_args: list[str] = field(default_factory=list)
    agent_env: list[str] = field(default_factory=list)
    agent_hosts: list[str] = field(default_factory=list)
    test_env: list[str] = field(default_factory=list)
    read_paths: list[str] = field(default_factory=list)


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
    for key, value in data.items():
        numeric_bool = isinstance(value, bool) and TOML_TYPES[key] is not bool  # True is an int to Python
        wrong = not isinstance(value, TOML_TYPES[key]) or numeric_bool
        if wrong or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
            raise FleetError(f".fleet.toml in {repo}: {key} has the wrong type ({value!r})")
    return data


def _repo_root(path: Path, given: str) -> Path:
    """The repository's own folder: a folder inside a work tree cannot be cloned, so it is refused."""
    if not path.is_dir() or not is_git_repo(path):
        raise FleetError(f"{given} is not a git repository")
    try:
        bare = git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
        root = git("rev-parse", "--absolute-git-dir" if bare else "--show-toplevel", cwd=path).strip()
    except GitError:
        raise FleetError(f"{given} is not a git repository") from None
    if Path(root).resolve() != path:
        raise FleetError(f"{given} is inside the git repository {root}; register {root} itself")
    return path


def check_shell_syntax(option: str, command: str) -> None:
    """Parse (never run) a command the way verification will run it, so a typo fails now, not on every ticket."""
    check_text(option, command)
    proc = subprocess.run(["/bin/sh", "-n", "-c", command], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise FleetError(f"cannot parse {option} {command!r}: {detail[0]}")


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
    limit = spec.max_concurrency or toml.get("max_concurrency", 0)
    if limit < 0:
        raise FleetError("--max-concurrency must be 0 (no limit) or more")
    if limit:
        settings["max_concurrency"] = int(limit)
    if spec.test_network or toml.get("test_network"):
        settings["test_network"] = True
    daily = spec.daily_budget_usd or toml.get("daily_budget_usd", 0)
    if daily:
        settings["daily_budget_usd"] = float(daily)
    ports = spec.ports or toml.get("ports", 0)
    if not 0 <= ports <= MAX_PORTS:
        raise FleetError(f"--ports must be between 0 (one block) and {MAX_PORTS}")
    if ports:
        settings["ports"] = int(ports)
    if not spec.env_cache or toml.get("env_cache") is False:
        settings["env_cache"] = False
    key_files = spec.env_key_files or toml.get("env_key_files")
    if key_files:
        settings["env_key_files"] = list(key_files)
    copies = [_copy_pair(item) for item in spec.copy_files or toml.get("copy_files", [])]
    if copies:
        settings["copy_files"] = copies
    return settings | _sandbox_settings(spec, toml) | _agent_settings(spec, toml)


def _sandbox_settings(spec: RepoSpec, toml: dict[str, Any]) -> dict[str, Any]:
    """What this repository's sandboxes may see: variables passed to tests, folders shown read-only."""
    settings: dict[str, Any] = {}
    names = _matching("test_env", spec.test_env or toml.get("test_env", []), VARIABLE, "a variable name")
    if names:
        settings["test_env"] = names
    paths = [str(Path(p).expanduser()) for p in spec.read_paths or toml.get("read_paths", [])]
    for path in paths:
        if not Path(path).is_absolute() or not Path(path).exists():
            raise FleetError(f"read_paths: {path} is not an absolute path that exists")
    if paths:
        settings["read_paths"] = paths
    return settings


def _agent_settings(spec: RepoSpec, toml: dict[str, Any]) -> dict[str, Any]:
    """How this repository's agents run: sandbox, network, and options every ticket's agent gets."""
    settings: dict[str, Any] = {}
    sandbox = spec.agent_sandbox if spec.agent_sandbox is not None else toml.get("agent_sandbox", True)
    if not sandbox:
        settings["agent_sandbox"] = False
    network = spec.agent_network or toml.get("agent_network", "")
    if network and network not in AGENT_NETWORKS:
        raise FleetError(f"agent network must be one of {', '.join(AGENT_NETWORKS)}, not {network!r}")
    if network:
        settings["agent_network"] = network
    model = spec.agent_model or toml.get("agent_model", "")
    if model:
        check_text("agent model", model)
        settings["agent_model"] = model
    for key in ("agent_args", "agent_env"):
        values = getattr(spec, key) or toml.get(key, [])
        if values:
            settings[key] = list(values)
    hosts = spec.agent_hosts or toml.get("agent_hosts", [])
    hosts = _matching("agent_hosts", hosts, HOST_PORT, "host:port (api.example.com:443, 127.0.0.1:8080)")
    if hosts:
        settings["agent_hosts"] = hosts
    return settings


def _matching(key: str, values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    """values as a list, or a FleetError naming the first that is not `what`."""
    for value in values:
        if not pattern.match(value):
            raise FleetError(f"{key}: {value!r} is not {what}")
    return list(values)


def _copy_pair(item: str) -> list[str]:
    """`SRC:DEST`: a file on the worker machines, copied to DEST inside every worktree and checkout."""
    source, sep, dest = str(item).rpartition(":")
    if not sep or not source or not dest or dest.startswith("/") or ".." in Path(dest).parts:
        raise FleetError(f"--copy-file {item!r}: use SRC:DEST with DEST a relative path inside the repository")
    source_path = Path(source).expanduser().resolve()
    if not source_path.is_file():
        raise FleetError(f"--copy-file {item!r}: {source} is not a file")
    return [str(source_path), dest]


def register_repo(db: Database, spec: RepoSpec, agents: AgentRule) -> dict[str, Any]:
    """Check and store a repository; returns its view. Its default agent is one the workers can run."""
    if not NAME.match(spec.name):
        raise FleetError(f"repo name {spec.name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    check_text("path", spec.path)
    path = _repo_root(Path(spec.path).expanduser().resolve(), spec.path)
    toml = read_fleet_toml(path)
    test_cmd = spec.test_cmd or toml.get("test_cmd", "")
    if not test_cmd.strip():
        raise FleetError("a repo needs --test-cmd (or test_cmd in its .fleet.toml)")
    check_shell_syntax("--test-cmd", test_cmd)
    setup_cmd = spec.setup_cmd or toml.get("setup_cmd") or None
    if setup_cmd:
        check_shell_syntax("--setup-cmd", setup_cmd)
    agent = spec.agent or toml.get("agent", "shell")
    check_agent(agent, agents)
    with db.session() as s:
        repo = queries.add_repo(
            s,
            name=spec.name,
            source=str(path),
            test_cmd=test_cmd,
            setup_cmd=setup_cmd,
            default_agent=agent,
            settings=_settings(spec, toml),
        )
        return views.repo_view(repo)
