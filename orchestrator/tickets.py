"""Submitting tickets: validate everything first, then write ticket, runs and first attempts in one transaction."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from db import policy, queries
from db.engine import Database
from db.lifecycle import TicketStatus, sources
from db.models import Repo, Ticket
from db.policy import NewTicket
from db.specs import SpecError, TicketSpec, parse
from db.spectypes import plural_names
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError, Unrunnable
from orchestrator.sources import BaseRefs
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher


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
        raise Unrunnable(problem)


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
    for name in ("title", "body", "agent_cmd"):
        check_text(name.replace("_", "-"), getattr(spec, name))
    for agent in spec.agents:
        check_agent(agent, agents)


def check_runnable(agents: Sequence[str], argv: Sequence[str], cwd: Path, local: bool) -> None:
    """Refuse a ticket whose agent can only fail: the shell agent without a command, a command not found or not
    executable. A relative path was made absolute against cwd when it exists there; the worker reads one still
    relative from its own folder, never from the repository (its content must not become the agent)."""
    if "shell" in agents and not argv:
        raise Unrunnable("the shell agent needs --agent-cmd (the command it runs, e.g. --agent-cmd ./fix.sh)")
    if not argv or not local:
        return
    program = argv[0]
    found = program if "/" in program else shutil.which(program)
    if found is None or not Path(found).is_absolute() or not Path(found).is_file():
        place = f"in {cwd}" if "/" in program else "on PATH"
        raise Unrunnable(f"agent command not found: {program} (looked {place})")
    if not os.access(found, os.X_OK):
        raise Unrunnable(f"agent command is not executable: {found} (chmod +x it, or name its interpreter first)")


def _run_agents(spec: TicketSpec, default_agent: str) -> list[str]:
    agents = spec.agents or [default_agent]
    return [agent for agent in agents for _ in range(spec.fanout)]


@dataclass
class Batch:
    """What the tickets of one submission share, each looked up once: ten thousand tickets of one repository read
    its row once, ask git for the base once, and split and look for the same agent command once.

    check: "given" refuses the shell agent without a command; "local" also looks for the command on this machine
    (where the embedded workers run)."""

    cwd: Path
    agents: AgentRule
    refs: BaseRefs
    check: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    runnable: set[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=set)

    def repo(self, s: queries.Session, name: str) -> Repo:
        if name not in self.repos:
            try:
                self.repos[name] = queries.get_repo(s, name)
            except queries.NotFound as exc:
                raise FleetError(str(exc)) from None
        return self.repos[name]

    def command(self, text: str) -> list[str]:
        if text not in self.commands:
            self.commands[text] = parse_agent_cmd(text, self.cwd)
        return list(self.commands[text])

    def check_runnable(self, agents: list[str], argv: list[str]) -> None:
        if self.check and (tuple(agents), tuple(argv)) not in self.runnable:
            check_runnable(agents, argv, self.cwd, self.check == "local")
            self.runnable.add((tuple(agents), tuple(argv)))


def _options(spec: TicketSpec, batch: Batch) -> dict[str, Any]:
    """The agent's options as the ticket stores them."""
    options: dict[str, Any] = {}
    if spec.agent_cmd:
        options["command"] = batch.command(spec.agent_cmd)
    if spec.timeout:
        options["timeout"] = spec.timeout
    if spec.model:
        options["model"] = spec.model
    if spec.agent_args:
        options["extra_args"] = list(spec.agent_args)
    if spec.agent_env:
        options["env"] = list(spec.agent_env)
    return options


def prepare(s: queries.Session, spec: TicketSpec, batch: Batch, actor: str, issue: int | None = None) -> NewTicket:
    """Check one ticket and resolve what it names (repository, base commit, agent command); nothing is written."""
    validate(spec, batch.agents)
    repo = batch.repo(s, spec.repo)
    options = _options(spec, batch)
    base_sha = batch.refs.resolve(repo.id, repo.source, spec.base, repo.name)
    run_agents = _run_agents(spec, repo.default_agent)
    batch.check_runnable(run_agents, options.get("command", []))
    fields = dict(
        repo_id=repo.id,
        title=spec.title,
        body=spec.body,
        base_ref=spec.base,
        base_sha=base_sha,
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
        issue_number=issue,
    )
    return NewTicket(fields, run_agents, repo.name)


def create(
    s: queries.Session,
    spec: TicketSpec,
    cwd: Path,
    actor: str,
    agents: AgentRule,
    refs: BaseRefs,
    check: str = "",
    issue: int | None = None,
) -> Ticket:
    """Write one ticket with its runs and first attempts (an evaluation's, an imported issue's); nothing is sent yet.
    refs is shared by the tickets of one evaluation or import, which resolve each base ref once."""
    [ticket_id] = policy.open_tickets(s, [prepare(s, spec, Batch(cwd, agents, refs, check), actor, issue)])
    return queries.get_ticket(s, ticket_id)


@dataclass(frozen=True)
class Submitted:
    """A ticket submit() wrote."""

    id: int
    title: str


def _prepare_in_batch(
    s: queries.Session, spec: TicketSpec, number: int, total: int, batch: Batch, actor: str
) -> NewTicket:
    try:
        return prepare(s, spec, batch, actor)
    except FleetError as exc:
        # One bad ticket in a batch stores none of them; say which one it was (keeping the kind of error).
        raise type(exc)(f"ticket {number} of {total}: {exc}" if total > 1 else str(exc)) from None


def submit(
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    specs: Sequence[TicketSpec],
    cwd: Path,
    actor: str,
    check_commands: bool = False,
) -> list[Submitted]:
    """Check every ticket, then store them all in one transaction (a few INSERTs of many rows), then let the
    scheduler fill the free slots. One bad ticket stores none.

    check_commands: refuse the shell agent without a command, and, with the embedded workers (which run on this
    machine; a team's workers may have commands this machine lacks), a command not found or not executable here."""
    check = ("local" if settings.embedded else "given") if check_commands else ""
    batch = Batch(cwd, AgentRule(dispatcher, settings.agent_classes), BaseRefs(settings.mirrors_dir), check)
    with db.session() as s:
        new = [_prepare_in_batch(s, spec, number, len(specs), batch, actor) for number, spec in enumerate(specs, 1)]
        ids = policy.open_tickets(s, new)
    dispatcher.kick(db, settings)
    return [Submitted(ticket_id, n.fields["title"]) for ticket_id, n in zip(ids, new, strict=True)]


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


def _spec(item: dict[str, Any], defaults: dict[str, Any], agents: AgentRule) -> TicketSpec:
    try:
        merged = {**defaults, **plural_names(item, TicketSpec.SINGULAR)}
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    if not merged.get("repo"):
        raise FleetError("no repo (give --repo, or a repo field)")
    try:
        spec = parse(TicketSpec, merged)
    except SpecError as exc:
        raise FleetError(str(exc)) from None
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
            raise type(exc)(f"ticket {number} in {path}: {exc}") from None
    return specs


CANCELLABLE = {s.value for s in sources(TicketStatus.CANCELLED, "cancel")}


def bulk_cancel_ids(db: Database, repo: str, include_review: bool) -> tuple[list[int], int]:
    """The ids `cancel --all` would cancel, and how many tickets waiting for review it leaves alone.

    A ticket waiting for review holds verified diffs someone paid agents for: only --include-review cancels it."""
    with db.session() as s:
        queries.get_repo(s, repo)
        tickets = queries.repo_tickets_in(s, repo, CANCELLABLE)
    kept = [ticket_id for ticket_id, status in tickets if status == TicketStatus.NEEDS_REVIEW and not include_review]
    return [ticket_id for ticket_id, _ in tickets if ticket_id not in kept], len(kept)
