"""What one unit of work knows: a snapshot of its rows, and what follows from them for the sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from db import policy, queries
from db.lifecycle import AttemptStatus
from db.models import Attempt
from db.specs import RepoSettings, copy_pair
from db.spectypes import granted_names, limits_from_file
from system.covers import credential_stores
from system.mirror import is_url
from system.sandbox import TURNED_OFF, bwrap_missing
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
    granted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # db.spectypes.granted_names: by setting
    limits_from_file: tuple[str, ...] = ()  # db.spectypes.limits_from_file: only ever lower the worker's
    over_budget: str | None = None
    budget_usd: float = 0.0  # the ticket's, enforced by the model gateway mid-attempt (0: no limit)
    area: tuple[str, ...] = field(default=())
    start_diff: str = ""  # the pull request's diff an attempt after PR feedback starts from
    hidden_patch: str = ""  # a task's test_patch (fleet eval run): the hidden tests of this ticket alone
    fingerprint: str = ""  # names this very attempt in the outcome journal (fingerprint)
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


def job_of(s: queries.Session, row: queries.RowMapping) -> Job:
    """The Job of an attempt from its row (queries.attempt_row), and its kept agent outcome, if any."""
    return Job(
        attempt_id=row["attempt_id"],
        number=row["number"],
        run_index=row["run_index"],
        ticket_id=row["ticket_id"],
        repo_id=row["repo_id"],
        source=row["source"],
        base_sha=row["base_sha"],
        agent=row["agent"],
        agent_options=dict(row["agent_options"]),
        prompt=row["prompt"],
        diff=row["diff"],
        test_cmd=row["test_cmd"],
        setup_cmd=row["setup_cmd"],
        repo_settings=RepoSettings.from_stored(row["repo_settings"]),
        granted=granted_names(row["repo_settings"]),
        limits_from_file=limits_from_file(row["repo_settings"]),
        targets=tuple(row["targets"]),
        area=tuple(row["area"]),
        budget_usd=row["budget_usd"] or 0.0,
        start_diff=row["start_diff"] or "",
        hidden_patch=row["hidden_patch"],
        fingerprint=fingerprint(row["ticket_id"], row["run_id"], row["number"], row["created_at"]),
        kept_agent=_kept_on_row(s, row),
    )


def budgets_of(row: queries.RowMapping, job: Job) -> policy.Budgets:
    """What bounds the spending of the attempt's ticket, from its row (queries.attempt_row)."""
    daily = job.repo_settings.daily_budget_usd or 0.0
    return policy.Budgets(job.ticket_id, job.budget_usd, job.repo_id, row["repo_name"], daily)


def fingerprint(ticket_id: int, run_id: int, number: int, created_at: datetime) -> str:
    """The attempt's ids and creation time: an outcome journal entry is never taken for another database's attempt."""
    return f"{ticket_id}:{run_id}:{number}:{created_at.isoformat()}"


def _kept_on_row(s: queries.Session, row: queries.RowMapping) -> dict[str, Any] | None:
    """The finished agent's outcome stored on the attempt's row, in the outcome journal's shape, or None (the rare
    case, an agent whose worker lost the lease before handing over, loads the whole attempt)."""
    if row["agent_finished_at"] is None or row["status"] != AttemptStatus.RUNNING.value:
        return None
    return row_outcome(s.get_one(Attempt, row["attempt_id"]))


def why_unsandboxed(rt: WorkerRuntime, job: Job) -> str | None:
    """Why this repository's agent and setup commands run without a sandbox, or None when they have one."""
    if not rt.settings.agent_sandbox:
        return TURNED_OFF.format("FLEET_AGENT_SANDBOX")
    if not job.repo_settings.agent_sandbox:
        return TURNED_OFF.format("the repository's agent_sandbox setting")
    return bwrap_missing()


def hidden_paths(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """Covered in every sandbox even where a shown folder holds them: Fleet's state, the repository, its hidden
    tests (a verification copies them into its checkout), credentials."""
    repository = () if is_url(job.source) else (Path(job.source),)  # a URL is fetched, never read in place
    hidden_tests = (Path(job.repo_settings.hidden_tests),) if job.repo_settings.hidden_tests else ()
    return (rt.settings.home, *repository, *hidden_tests, *credential_stores(Path.home()))


def declared_paths(rt: WorkerRuntime, job: Job) -> tuple[Path, ...]:
    """What the operator and the repository declare readable in every sandbox, besides the toolchains."""
    return (*rt.settings.sandbox_read_paths, *map(Path, job.repo_settings.read_paths))


def job_secrets(job: Job) -> list[str]:
    """Values never stored or shown: the copied files' contents and the worker's secret-named variables."""
    return secrets_in([src for src, _ in job.copy_files]) + secret_values()
