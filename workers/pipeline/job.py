"""What one unit of work knows: a snapshot of its rows, and what follows from them for the sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.lifecycle import AttemptStatus
from db.models import Attempt
from db.specs import RepoSettings, copy_pair
from system.mirror import is_url
from system.sandbox import TURNED_OFF, bwrap_missing, credential_stores
from verification.envcache import DEFAULT_KEY_FILES, EnvCache
from verification.environment import secrets_in
from workers.pipeline.outcome import row_outcome
from workers.runtime import WorkerRuntime
from workers.secrets import secret_values


@dataclass(frozen=True)
class Job:
    """A snapshot of the rows one unit of work needs, so no session stays open while it runs."""

    attempt_id: int
    number: int
    run_index: int
    ticket_id: int
    repo_id: int
    source: str
    base_sha: str
    agent: str
    agent_options: dict[str, Any]
    prompt: str
    diff: str
    test_cmd: str
    setup_cmd: str | None
    repo_settings: RepoSettings
    targets: tuple[str, ...] = field(default=())
    over_budget: str | None = None
    budget_usd: float = 0.0  # the ticket's, enforced by the model gateway mid-attempt (0: no limit)
    area: tuple[str, ...] = field(default=())
    start_diff: str = ""  # the pull request's diff an attempt after PR feedback starts from
    hidden_patch: str = ""  # a task's test_patch (fleet eval run): the hidden tests of this ticket alone
    fingerprint: str = ""  # names this very attempt in the outcome journal (fingerprint_of)
    # A finished agent's outcome already on the row (its worker lost the lease before it could hand it over), or
    # in this worker's outcome journal: the agent is not run again.
    kept_agent: dict[str, Any] | None = None
    agent_start: int = 0  # which start of the attempt's agent the claim counted (0: none, it does not run)

    @property
    def repo_key(self) -> str:
        return f"repo-{self.repo_id}"

    @property
    def copy_files(self) -> tuple[tuple[str, str], ...]:
        return tuple(copy_pair(item) for item in self.repo_settings.copy_files)

    @property
    def ports(self) -> int:
        """Ports each attempt of this repo needs (0: one block, FLEET_PORT_BLOCK_SIZE)."""
        return self.repo_settings.ports

    @property
    def env_key_files(self) -> tuple[str, ...]:
        return tuple(self.repo_settings.env_key_files or DEFAULT_KEY_FILES)

    def env_cache(self, cache: EnvCache) -> EnvCache | None:
        """The worker's environment cache, unless it or the repository turned it off."""
        return cache if cache.enabled and self.repo_settings.env_cache else None


def snapshot(attempt: Attempt) -> Job:
    ticket = attempt.run.ticket
    repo = ticket.repo
    return Job(
        attempt_id=attempt.id,
        number=attempt.number,
        run_index=attempt.run.index,
        ticket_id=ticket.id,
        repo_id=repo.id,
        source=repo.source,
        base_sha=ticket.base_sha,
        agent=attempt.run.agent,
        agent_options=dict(ticket.agent_options),
        prompt=attempt.prompt,
        diff=attempt.diff,
        test_cmd=repo.test_cmd,
        setup_cmd=repo.setup_cmd,
        repo_settings=RepoSettings.from_stored(repo.settings),
        targets=tuple(ticket.targets),
        area=tuple(ticket.area),
        budget_usd=ticket.budget_usd or 0.0,
        start_diff=attempt.start_diff or "",
        hidden_patch=ticket.hidden_patch,
        fingerprint=fingerprint_of(attempt),
        kept_agent=agent_outcome(attempt),
    )


def fingerprint_of(attempt: Attempt) -> str:
    """The attempt's ids and creation time: an outcome journal entry is never taken for another database's attempt."""
    return f"{attempt.ticket_id}:{attempt.run_id}:{attempt.number}:{attempt.created_at.isoformat()}"


def agent_outcome(attempt: Attempt) -> dict[str, Any] | None:
    """The finished agent's outcome stored on the row, in the outcome journal's shape, or None."""
    if attempt.agent_finished_at is None or attempt.status != AttemptStatus.RUNNING.value:
        return None
    return row_outcome(attempt)


def why_unsandboxed(rt: WorkerRuntime, job: Job) -> str | None:
    """Why this repository's agent and setup commands run without a sandbox, or None when they have one."""
    if not rt.settings.agent_sandbox:
        return TURNED_OFF.format("FLEET_AGENT_SANDBOX")
    if not job.repo_settings.agent_sandbox:
        return TURNED_OFF.format("the repository's agent_sandbox setting")
    return bwrap_missing()


def hidden_paths(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """Covered in every sandbox even where a shown folder holds them: Fleet's state, the repository, credentials."""
    repository = () if is_url(job.source) else (Path(job.source),)  # a URL is fetched, never read in place
    return (rt.settings.home, *repository, *credential_stores(Path.home()))


def declared_paths(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """What the operator and the repository declare readable in every sandbox, besides the toolchains."""
    return (*rt.settings.sandbox_read_paths, *map(Path, job.repo_settings.read_paths))


def job_secrets(job: Job) -> list[str]:
    """Values never stored or shown: the copied files' contents and the worker's secret-named variables."""
    return secrets_in([src for src, _ in job.copy_files]) + secret_values()
