"""SQLAlchemy 2 typed models: the database is Fleet's source of truth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.lifecycle import ATTEMPT, MERGE, RUN, TICKET


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as UTC and read back as aware UTC datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            return value.replace(tzinfo=None) if dialect.name == "sqlite" else value
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Repo(Base):
    __tablename__ = "repos"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(Text)
    test_cmd: Mapped[str] = mapped_column(Text)
    setup_cmd: Mapped[str | None] = mapped_column(Text)
    default_agent: Mapped[str] = mapped_column(String(200), default="shell")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    base_ref: Mapped[str] = mapped_column(Text)
    base_sha: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    agent: Mapped[str] = mapped_column(String(200))
    agent_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempt_budget: Mapped[int] = mapped_column(Integer, default=3)
    fanout: Mapped[int] = mapped_column(Integer, default=1)
    until: Mapped[str] = mapped_column(String(10), default="all")
    budget_usd: Mapped[float] = mapped_column(Float, default=0.0)
    targets: Mapped[list[Any]] = mapped_column(default=list)
    area: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default=TICKET.initial.value)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    submitted_by: Mapped[str] = mapped_column(String(200), default="")
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    cancelled_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    repo: Mapped[Repo] = relationship(lazy="joined")
    runs: Mapped[list[Run]] = relationship(back_populates="ticket", order_by="Run.index")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("ticket_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    index: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(200))
    attempt_limit: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=RUN.initial.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()

    ticket: Mapped[Ticket] = relationship(back_populates="runs")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="run", order_by="Attempt.number")

    @property
    def number(self) -> int:
        """The run as people count it, from 1 like attempts (`index` is the stored position, from 0)."""
        return self.index + 1


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("run_id", "number"),
        Index("ix_attempts_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=ATTEMPT.initial.value)
    prompt: Mapped[str] = mapped_column(Text, default="")
    feedback_in: Mapped[str] = mapped_column(Text, default="")
    transcript: Mapped[str] = mapped_column(Text, default="")
    diff: Mapped[str] = mapped_column(Text, default="")
    diff_stat: Mapped[str] = mapped_column(Text, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()
    agent_runs: Mapped[int] = mapped_column(Integer, default=0)
    recoveries: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    agent_finished_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    run: Mapped[Run] = relationship(back_populates="attempts")
    verification: Mapped[Verification | None] = relationship(back_populates="attempt", uselist=False)


class Verification(Base):
    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    verdict: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    fail_to_pass: Mapped[list[Any]] = mapped_column(default=list)
    pass_to_pass: Mapped[int] = mapped_column(Integer, default=0)
    broken: Mapped[list[Any]] = mapped_column(default=list)
    flaky: Mapped[list[Any]] = mapped_column(default=list)
    flags: Mapped[list[Any]] = mapped_column(default=list)
    reverted: Mapped[list[Any]] = mapped_column(default=list)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    feedback: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("baselines.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    attempt: Mapped[Attempt] = relationship(back_populates="verification")


class Baseline(Base):
    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("repo_id", "base_sha", "spec_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    base_sha: Mapped[str] = mapped_column(String(64))
    spec_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"))
    decision: Mapped[str] = mapped_column(String(20))
    feedback: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(200), default="")
    branch: Mapped[str | None] = mapped_column(String(200))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MergeEntry(Base):
    """One approved diff in a target branch's merge queue, and the speculative build it is verified as."""

    __tablename__ = "merge_entries"
    __table_args__ = (Index("ix_merge_entries_repo_status", "repo_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"))
    target: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=MERGE.initial.value)
    files: Mapped[list[Any]] = mapped_column(default=list)  # the paths the diff touches
    area: Mapped[list[Any]] = mapped_column(default=list)  # the ticket's --area globs
    position: Mapped[int | None] = mapped_column(Integer)  # the order of built entries; None until built
    parent_sha: Mapped[str | None] = mapped_column(String(64))  # the build sits on this commit (head or an entry's)
    build_sha: Mapped[str | None] = mapped_column(String(64))  # head + the entries ahead + this diff
    stack: Mapped[list[Any]] = mapped_column(default=list)  # ids of the entries ahead inside the build
    builds: Mapped[int] = mapped_column(Integer, default=0)  # verifications started
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()
    failures: Mapped[list[Any]] = mapped_column(default=list)  # failing tests of the last build
    conflict: Mapped[list[Any]] = mapped_column(default=list)  # files that did not apply on the build's parent
    suspects: Mapped[list[Any]] = mapped_column(default=list)  # files the failing tests' tracebacks name
    reason: Mapped[str] = mapped_column(Text, default="")
    merged_sha: Mapped[str | None] = mapped_column(String(64))
    enqueued_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    ticket: Mapped[Ticket] = relationship(lazy="joined")


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    busy: Mapped[int] = mapped_column(Integer, default=0)
    queues: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column()


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_ticket", "ticket_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A web/API credential: only the sha256 of its secret is stored; the secret is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
