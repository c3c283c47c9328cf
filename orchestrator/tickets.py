"""Submitting tickets: validate everything first, then write ticket, runs and first attempts in one transaction."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from db import queries
from db.engine import Database
from db.models import Ticket
from orchestrator import policy
from orchestrator.errors import FleetError
from workers.agents import AGENTS
from workers.git import GitError, resolve_commit
from workers.queue import Dispatcher

MAX_TITLE = 500
MAX_BODY = 200_000


@dataclass
class TicketSpec:
    """What a person asks for; the same fields on the command line and in a --file list."""

    repo: str
    title: str
    body: str = ""
    base: str = "HEAD"
    agents: list[str] = field(default_factory=list)
    agent_cmd: str = ""
    attempts: int = 3
    fanout: int = 1
    targets: list[str] = field(default_factory=list)
    priority: int = 0
    timeout: float | None = None


def parse_agent_cmd(command: str, cwd: Path) -> list[str]:
    """Split an agent command into argv (no shell); a relative script path is resolved against cwd."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise FleetError(f"cannot parse --agent-cmd: {exc}") from None
    if argv and "/" in argv[0] and not Path(argv[0]).is_absolute() and (cwd / argv[0]).exists():
        argv[0] = str((cwd / argv[0]).resolve())
    return argv


TEST_ID = re.compile(r"(?<![\w/.-])[\w][\w/.-]*\.py::[\w\[\]:.,=-]+")


def mentioned_tests(spec: TicketSpec) -> list[str]:
    """Test ids named in the title or body (`tests/test_x.py::test_y`): the targets when --target is absent."""
    found = TEST_ID.findall(f"{spec.title}\n{spec.body}")
    return list(dict.fromkeys(t.rstrip(".,:") for t in found))


def validate(spec: TicketSpec) -> None:
    if not spec.title.strip():
        raise FleetError("a ticket needs a non-empty --title")
    if len(spec.title) > MAX_TITLE or len(spec.body) > MAX_BODY:
        raise FleetError(f"title or body too long (limits: {MAX_TITLE} and {MAX_BODY} characters)")
    if spec.attempts < 1 or spec.fanout < 1:
        raise FleetError("--attempts and --fanout must be at least 1")
    for agent in spec.agents:
        if agent not in AGENTS and ":" not in agent and "." not in agent:
            raise FleetError(f"unknown agent {agent!r}; known agents: {', '.join(sorted(AGENTS))}")


def _run_agents(spec: TicketSpec, default_agent: str) -> list[str]:
    agents = spec.agents or [default_agent]
    return [agent for agent in agents for _ in range(spec.fanout)]


def _base_sha(source: str, ref: str, repo_name: str) -> str:
    try:
        return resolve_commit(Path(source), ref)
    except (GitError, FileNotFoundError, NotADirectoryError):
        raise FleetError(f"base ref {ref!r} does not exist in repo {repo_name!r} ({source})") from None


def create(s: queries.Session, spec: TicketSpec, cwd: Path, actor: str) -> tuple[Ticket, policy.Waiting]:
    """Write one ticket with its runs and first attempts; nothing is sent yet."""
    validate(spec)
    try:
        repo = queries.get_repo(s, spec.repo)
    except queries.NotFound as exc:
        raise FleetError(str(exc)) from None
    options: dict[str, Any] = {}
    if spec.agent_cmd:
        options["command"] = parse_agent_cmd(spec.agent_cmd, cwd)
    if spec.timeout:
        options["timeout"] = spec.timeout
    ticket = queries.add_ticket(
        s,
        _run_agents(spec, repo.default_agent),
        repo_id=repo.id,
        title=spec.title,
        body=spec.body,
        base_ref=spec.base,
        base_sha=_base_sha(repo.source, spec.base, repo.name),
        priority=spec.priority,
        agent=",".join(spec.agents or [repo.default_agent]),
        agent_options=options,
        attempt_budget=spec.attempts,
        fanout=spec.fanout,
        targets=list(spec.targets) or mentioned_tests(spec),
        submitted_by=actor,
    )
    queries.log_event(s, "submitted", spec.title, ticket_id=ticket.id, actor=actor)
    return ticket, policy.start_runs(s, ticket)


def submit(db: Database, dispatcher: Dispatcher, specs: Sequence[TicketSpec], cwd: Path, actor: str) -> list[Ticket]:
    """Validate and store every ticket in one transaction, then ring the queue for each first attempt."""
    waiting: policy.Waiting = []
    tickets = []
    with db.session() as s:
        for spec in specs:
            ticket, first = create(s, spec, cwd, actor)
            tickets.append(ticket)
            waiting += first
    dispatcher.send(waiting)
    return tickets


SPEC_KEYS = {f for f in TicketSpec.__dataclass_fields__}


def load_specs(path: Path, defaults: dict[str, Any]) -> list[TicketSpec]:
    """Tickets from a YAML or JSON list; each entry may override the command line's options."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise FleetError(f"cannot read tickets from {path}: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FleetError(f"{path} must hold a list of tickets (mappings with at least a title)")
    specs = []
    for number, item in enumerate(data, start=1):
        unknown = set(item) - SPEC_KEYS - {"agent"}
        if unknown:
            raise FleetError(f"ticket {number} in {path}: unknown field(s) {', '.join(sorted(unknown))}")
        merged = {**defaults, **item}
        if "agent" in merged:
            agent = merged.pop("agent")
            merged["agents"] = [agent] if isinstance(agent, str) else list(agent)
        try:
            specs.append(TicketSpec(**merged))
        except TypeError as exc:
            raise FleetError(f"ticket {number} in {path}: {exc}") from None
    return specs
