"""Submitting tickets: validate everything first, then write ticket, runs and first attempts in one transaction."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from db import policy, queries
from db.engine import Database
from db.models import Ticket
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from system.git import GitError, resolve_commit
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher

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
    until: str = policy.UNTIL_ALL
    model: str = ""
    agent_args: list[str] = field(default_factory=list)
    agent_env: list[str] = field(default_factory=list)
    budget_usd: float = 0.0
    area: list[str] = field(default_factory=list)


def parse_agent_cmd(command: str, cwd: Path) -> list[str]:
    """Split an agent command into argv (no shell); a relative script path is resolved against cwd."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise FleetError(f"cannot parse --agent-cmd: {exc}") from None
    if argv and "/" in argv[0] and not Path(argv[0]).is_absolute() and (cwd / argv[0]).exists():
        argv[0] = str((cwd / argv[0]).resolve())
    return argv


TEST_ID = re.compile(r"(?<![\w/.-])[\w][\w/.-]*\.py::[\w:.-]+(?:\[[^\]\n]*\])?")


def mentioned_tests(spec: TicketSpec) -> list[str]:
    """Test ids named in the title or body (`tests/test_x.py::test_y`): the targets when --target is absent."""
    found = TEST_ID.findall(f"{spec.title}\n{spec.body}")
    return list(dict.fromkeys(t.rstrip(".,:") for t in found))


def check_agent(agent: str, agents: AgentRule) -> None:
    """A built-in agent's name, or a class the admin listed (FLEET_AGENT_CLASSES): what the workers can run."""
    problem = agents.problem(agent)
    if problem is not None:
        raise FleetError(problem)


def check_text(name: str, value: str) -> None:
    """Text is stored and handed to agents as UTF-8: no NUL, no undecodable bytes from the command line."""
    if "\x00" in value:
        raise FleetError(f"the {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FleetError(f"the {name} is not valid UTF-8 (check the terminal's encoding)") from None


def validate(spec: TicketSpec, agents: AgentRule) -> None:
    """Reject a ticket that could never run, or names an agent the workers would refuse, before anything is written."""
    if not spec.title.strip():
        raise FleetError("a ticket needs a non-empty --title")
    if len(spec.title) > MAX_TITLE or len(spec.body) > MAX_BODY:
        raise FleetError(f"title or body too long (limits: {MAX_TITLE} and {MAX_BODY} characters)")
    for name in ("title", "body", "agent_cmd"):
        check_text(name.replace("_", "-"), getattr(spec, name))
    if spec.until not in (policy.UNTIL_FIRST, policy.UNTIL_ALL):
        raise FleetError(f"--until must be 'first' or 'all', not {spec.until!r}")
    if spec.attempts < 1 or spec.fanout < 1:
        raise FleetError("--attempts and --fanout must be at least 1")
    if spec.timeout is not None and not (0 < spec.timeout < math.inf):
        raise FleetError(f"--timeout must be a positive number of seconds, not {spec.timeout:g}")
    for agent in spec.agents:
        check_agent(agent, agents)


def _run_agents(spec: TicketSpec, default_agent: str) -> list[str]:
    agents = spec.agents or [default_agent]
    return [agent for agent in agents for _ in range(spec.fanout)]


def _base_sha(source: str, ref: str, repo_name: str) -> str:
    try:
        return resolve_commit(Path(source), ref)
    except (GitError, FileNotFoundError, NotADirectoryError):
        raise FleetError(f"base ref {ref!r} does not exist in repo {repo_name!r} ({source})") from None


def create(s: queries.Session, spec: TicketSpec, cwd: Path, actor: str, agents: AgentRule) -> Ticket:
    """Write one ticket with its runs and first attempts; nothing is sent yet."""
    validate(spec, agents)
    try:
        repo = queries.get_repo(s, spec.repo)
    except queries.NotFound as exc:
        raise FleetError(str(exc)) from None
    options: dict[str, Any] = {}
    if spec.agent_cmd:
        options["command"] = parse_agent_cmd(spec.agent_cmd, cwd)
    if spec.timeout:
        options["timeout"] = spec.timeout
    if spec.model:
        options["model"] = spec.model
    if spec.agent_args:
        options["extra_args"] = list(spec.agent_args)
    if spec.agent_env:
        options["env"] = list(spec.agent_env)
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
        until=spec.until,
        budget_usd=spec.budget_usd,
        area=list(spec.area),
        targets=list(spec.targets) or mentioned_tests(spec),
        submitted_by=actor,
    )
    queries.log_event(s, "submitted", spec.title, ticket_id=ticket.id, actor=actor)
    policy.start_runs(s, ticket)
    return ticket


def _create_in_batch(
    s: queries.Session, spec: TicketSpec, number: int, total: int, cwd: Path, actor: str, agents: AgentRule
) -> Ticket:
    try:
        return create(s, spec, cwd, actor, agents)
    except FleetError as exc:
        # One bad ticket in a batch stores none of them; say which one it was.
        raise FleetError(f"ticket {number} of {total}: {exc}" if total > 1 else str(exc)) from None


def submit(
    db: Database, dispatcher: Dispatcher, settings: Settings, specs: Sequence[TicketSpec], cwd: Path, actor: str
) -> list[Ticket]:
    """Validate and store every ticket in one transaction, then let the scheduler fill the free slots."""
    agents = AgentRule(dispatcher, settings.agent_classes)
    with db.session() as s:
        tickets = [
            _create_in_batch(s, spec, number, len(specs), cwd, actor, agents) for number, spec in enumerate(specs, 1)
        ]
    dispatcher.kick(db, settings)
    return tickets


SPEC_KEYS = {f for f in TicketSpec.__dataclass_fields__}
TEXT_FIELDS = ("repo", "title", "body", "base", "agent_cmd", "until", "model")
INT_FIELDS = ("attempts", "fanout", "priority")
LIST_FIELDS = ("agents", "targets", "agent_args", "agent_env", "area")


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"cannot read tickets from {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FleetError(f"cannot read tickets from {path}: not UTF-8 text") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise FleetError(f"{path} is not valid JSON: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise FleetError(f"{path} is not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path} is not valid YAML: {exc}") from None


def _check_types(fields: dict[str, Any]) -> None:
    """A file's values arrive untyped; wrong types must fail here, not deep in validation or the database."""
    for key in TEXT_FIELDS:
        if key in fields and not isinstance(fields[key], str):
            raise FleetError(f"{key} must be text, not {fields[key]!r}")
    for key in INT_FIELDS:
        if key in fields and (isinstance(fields[key], bool) or not isinstance(fields[key], int)):
            raise FleetError(f"{key} must be a whole number, not {fields[key]!r}")
    timeout = fields.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise FleetError(f"timeout must be a number of seconds, not {timeout!r}")
    for key in LIST_FIELDS:
        if key in fields and not (isinstance(fields[key], list) and all(isinstance(v, str) for v in fields[key])):
            raise FleetError(f"{key} must be a list of text, not {fields[key]!r}")


def _spec(item: dict[str, Any], defaults: dict[str, Any], agents: AgentRule) -> TicketSpec:
    unknown = set(item) - SPEC_KEYS - {"agent"}
    if unknown:
        raise FleetError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    merged = {**defaults, **item}
    if "agent" in merged:
        agent = merged.pop("agent")
        merged["agents"] = [agent] if isinstance(agent, str) else agent
    _check_types(merged)
    if not merged.get("repo"):
        raise FleetError("no repo (give --repo, or a repo field)")
    spec = TicketSpec(**merged)
    validate(spec, agents)
    return spec


def load_specs(path: Path, defaults: dict[str, Any], agents: AgentRule) -> list[TicketSpec]:
    """Tickets from a YAML or JSON list; each entry may override the command line's options."""
    data = _parse(path)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FleetError(f"{path} must hold a list of tickets (mappings with at least a title)")
    if not data:
        raise FleetError(f"{path} holds no tickets")
    specs = []
    for number, item in enumerate(data, start=1):
        try:
            specs.append(_spec(item, defaults, agents))
        except FleetError as exc:
            raise FleetError(f"ticket {number} in {path}: {exc}") from None
    return specs
