"""`fleet eval run` and `fleet eval compare`: a task set run as tickets through the normal scheduler.

Each task x agent x sample is one ticket: the problem statement as its body, FAIL_TO_PASS as its named targets,
the test_patch as its hidden tests (applied only when verifying). PASS_TO_PASS needs no ticket field: Fleet
already requires every test passing at the base to keep passing, a superset of PASS_TO_PASS
(orchestrator/evalreport.py says where that makes Fleet stricter than the reference harness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db import queries
from db.engine import Database
from db.models import EvalEntry
from db.specs import SpecError, TicketSpec, parse
from db.taskspec import TaskSpec
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from orchestrator.evalreport import entry_outcome
from orchestrator.sources import BaseRefs
from orchestrator.tickets import create
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher


@dataclass(frozen=True)
class EvalAgent:
    """An agent as the report names it: `NAME`, `NAME@MODEL`, or `LABEL=COMMAND` (the shell agent running COMMAND)."""

    label: str
    agent: str
    model: str = ""
    command: str = ""

    @classmethod
    def parse(cls, text: str) -> EvalAgent:
        label, eq, command = text.partition("=")
        if eq:
            if not label.strip() or not command.strip():
                raise FleetError(f"--agent {text!r}: give LABEL=COMMAND with both parts")
            return cls(label.strip(), "shell", "", command.strip())
        agent, _, model = text.partition("@")
        if not agent:
            raise FleetError(f"--agent {text!r}: no agent name")
        return cls(agent, agent, model)


def title(task: TaskSpec, sample: int, samples: int) -> str:
    return f"{task.instance_id} (sample {sample} of {samples})"


def ticket_spec(task: TaskSpec, agent: EvalAgent, sample: int, samples: int, repo: str, attempts: int) -> TicketSpec:
    data: dict[str, Any] = {
        "repo": repo,
        "title": title(task, sample, samples),
        "body": task.problem_statement,
        "base": task.base_commit,
        "agents": [agent.agent],
        "targets": list(task.FAIL_TO_PASS),
        "attempts": attempts,
    }
    if agent.command:
        data["agent_cmd"] = agent.command
    if agent.model:
        data["model"] = agent.model
    try:
        return parse(TicketSpec, data)
    except SpecError as exc:
        raise FleetError(f"task {task.instance_id}: {exc}") from None


def _repo_for(s: queries.Session, task: TaskSpec, override: str) -> str:
    """The registered repository a task runs on: --repo, else the task's repo (owner/name: its last part)."""
    for name in [override] if override else dict.fromkeys([task.repo, task.repo_name]):
        try:
            repo = queries.get_repo(s, name)
        except queries.NotFound:
            continue
        if task.setup_cmd and task.setup_cmd != (repo.setup_cmd or ""):
            raise FleetError(
                f"task {task.instance_id}: its setup command differs from repo {repo.name!r}'s "
                "(set it with fleet repo update --setup-cmd)"
            )
        return repo.name
    raise FleetError(f"task {task.instance_id}: no registered repo {override or task.repo!r} (fleet repo add it)")


def run_evaluation(
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    tasks: Sequence[TaskSpec],
    agents: Sequence[EvalAgent],
    *,
    name: str,
    samples: int,
    tasks_file: str,
    cwd: Path,
    actor: str,
    repo: str = "",
    attempts: int = 1,
) -> list[int]:
    """Write the evaluation and one ticket per task x agent x sample in one transaction; the ticket ids."""
    if not agents:
        raise FleetError("give at least one --agent")
    labels = [a.label for a in agents]
    if len(set(labels)) != len(labels):
        raise FleetError("two --agent options have the same name; give LABEL=COMMAND or NAME@MODEL to tell them apart")
    rule = AgentRule(dispatcher, settings.agent_classes)
    refs = BaseRefs(settings.mirrors_dir)
    ids: list[int] = []
    with db.session() as s:
        try:
            evaluation = queries.add_evaluation(s, name, tasks_file, samples, actor)
        except queries.AlreadyExists as exc:
            raise FleetError(str(exc)) from None
        for task in tasks:
            repo_name = _repo_for(s, task, repo)
            for agent in agents:
                for sample in range(1, samples + 1):
                    spec = ticket_spec(task, agent, sample, samples, repo_name, attempts)
                    try:
                        ticket = create(s, spec, cwd, actor, rule, refs, check="given")
                    except FleetError as exc:
                        raise type(exc)(f"task {task.instance_id}: {exc}") from None
                    ticket.hidden_patch = task.test_patch
                    s.add(_entry(evaluation.id, task, agent, sample, ticket.id))
                    ids.append(ticket.id)
    dispatcher.kick(db, settings)
    return ids


def _entry(evaluation_id: int, task: TaskSpec, agent: EvalAgent, sample: int, ticket_id: int) -> EvalEntry:
    return EvalEntry(
        evaluation_id=evaluation_id,
        instance_id=task.instance_id,
        agent=agent.label,
        model=agent.model,
        sample=sample,
        ticket_id=ticket_id,
        fail_to_pass=list(task.FAIL_TO_PASS),
        pass_to_pass=list(task.PASS_TO_PASS),
    )


def compare(db: Database, before: str, after: str) -> dict[str, Any]:
    """Per agent, the tasks solved more often (better) or less often (worse) in `after` than in `before`."""
    rates = {name: _solve_rates(db, name) for name in (before, after)}
    agents = sorted(set(rates[before]) | set(rates[after]))
    result: dict[str, Any] = {"before": before, "after": after, "agents": []}
    for agent in agents:
        old, new = rates[before].get(agent, {}), rates[after].get(agent, {})
        tasks = sorted(set(old) & set(new))
        row = {
            "agent": agent,
            "better": [_change(t, old[t], new[t]) for t in tasks if new[t] > old[t]],
            "worse": [_change(t, old[t], new[t]) for t in tasks if new[t] < old[t]],
            "same": sum(1 for t in tasks if new[t] == old[t]),
            "only_before": sorted(set(old) - set(new)),
            "only_after": sorted(set(new) - set(old)),
        }
        result["agents"].append(row)
    return result


def _change(task: str, old: float, new: float) -> dict[str, Any]:
    return {"task": task, "before": old, "after": new}


def _solve_rates(db: Database, name: str) -> dict[str, dict[str, float]]:
    """agent -> instance_id -> the share of its finished samples that passed."""
    with db.session() as s:
        try:
            evaluation = queries.get_evaluation(s, name)
        except queries.NotFound as exc:
            raise FleetError(str(exc)) from None
        counts: dict[str, dict[str, list[int]]] = {}
        for entry in evaluation.entries:
            outcome = entry_outcome(entry)
            if outcome.finished:
                cell = counts.setdefault(entry.agent, {}).setdefault(entry.instance_id, [0, 0])
                cell[0] += outcome.verdict == "passed"
                cell[1] += 1
    return {a: {t: round(c[0] / c[1], 3) for t, c in tasks.items()} for a, tasks in counts.items()}
