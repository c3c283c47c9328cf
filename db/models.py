"""SQLAlchemy 2 typed models: the database is Fleet's source of truth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.evalmodels import EvalEntry as EvalEntry  # re-exported: defined apart, registered with the rest
from db.evalmodels import Evaluation as Evaluation
from db.lifecycle import ATTEMPT, MERGE, RUN, TICKET, WAITING_LINE
from db.modelbase import Base as Base  # re-exported: the rest of db/ imports the base and utcnow from here
from db.modelbase import utcnow as utcnow

_WAITS = sql(WAITING_LINE)


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
    __table_args__ = (
        Index("ix_tickets_status_id", "status", "id"),
        Index("ix_tickets_repo_id", "repo_id", "id"),
        Index("ix_tickets_status_updated", "status", "updated_at"),  # the review backlog, from the index alone
    )

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
    hidden_patch: Mapped[str] = mapped_column(Text, default="")  # a task's test_patch: applied only to verify
    status: Mapped[str] = mapped_column(String(20), default=TICKET.initial.value)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    submitted_by: Mapped[str] = mapped_column(String(200), default="")
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    cancelled_by: Mapped[str | None] = mapped_column(String(200))
    pr_url: Mapped[str] = mapped_column(Text, default="")  # the pull request delivery opened (deliver = pr)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    issue_number: Mapped[int | None] = mapped_column(Integer)  # the forge issue it was imported from
    delivering_by: Mapped[str | None] = mapped_column(String(200))  # an approval pushing it: no other decision
    delivering_token: Mapped[str | None] = mapped_column(String(64))  # the claim's own: only it renews or releases
    delivering_until: Mapped[datetime | None] = mapped_column()  # the claim lapses then (its process died)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    repo: Mapped[Repo] = relationship(lazy="joined")
    runs: Mapped[list[Run]] = relationship(back_populates="ticket", order_by="Run.index")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("ticket_id", "index"), Index("ix_runs_created", "created_at"))

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
        Index("ix_attempts_status_dispatched", "status", "dispatched_at"),
        Index("ix_attempts_waiting", "repo_id", "precedence", "id", sqlite_where=_WAITS, postgresql_where=_WAITS),
        Index("ix_attempts_ticket", "ticket_id"),
        Index("ix_attempts_created", "created_at", "cost_usd", "started_at", "agent_finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    repo_id: Mapped[int] = mapped_column(Integer, server_default="0")  # the ticket's: see precedence
    precedence: Mapped[int] = mapped_column(Integer, server_default="0")  # -priority: 0013's trigger copies both
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=ATTEMPT.initial.value)
    prompt: Mapped[str] = mapped_column(Text, default="")
    feedback_in: Mapped[str] = mapped_column(Text, default="")
    start_diff: Mapped[str] = mapped_column(Text, default="")  # applied before the agent runs: a PR's branch
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
    # Agent runs started after the agent had finished (its outcome came late): paid work lost; chaos holds it at 0.
    agent_repeats: Mapped[int] = mapped_column(Integer, default=0)
    recoveries: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # Model calls the gateway metered without a price for their model: their tokens count, their cost is unknown.
    unpriced_calls: Mapped[int] = mapped_column(Integer, default=0)
    # What the agent's CLI reported about itself, kept beside the gateway's figures as a cross-check.
    reported_tokens_in: Mapped[int | None] = mapped_column(Integer)
    reported_tokens_out: Mapped[int | None] = mapped_column(Integer)
    reported_cost_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    agent_finished_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    run: Mapped[Run] = relationship(back_populates="attempts")
    verification: Mapped[Verification | None] = relationship(back_populates="attempt", uselist=False)


class ModelCall(Base):
    """One request an agent made through the model gateway, with the usage its provider billed."""

    __tablename__ = "model_calls"
    __table_args__ = (UniqueConstraint("attempt_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200), default="")
    streamed: Mapped[bool] = mapped_column(default=False)
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status the agent got
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)  # None: no price known for the model ("unpriced")
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    request: Mapped[str] = mapped_column(Text, default="")  # redacted and bounded, as is the response
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Verification(Base):
    __tablename__ = "verifications"
    __table_args__ = (
        Index("ix_verifications_created", "created_at", "verdict", "duration"),
        Index("ix_verifications_verdict", "verdict"),
    )

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


class MetricTotal(Base):
    """A running total behind /metrics, kept by the database's triggers (migration 0009) as verifications are
    recorded and attempts' agents finish or spend: a scrape sums at most a few thousand rows, never the history.
    Rows are split in shards so that concurrent writers seldom wait for the same row: on PostgreSQL the writing
    connection's (migration 0011), on SQLite, which writes one transaction at a time, the attempt id's."""

    __tablename__ = "metric_totals"

    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(40), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[float] = mapped_column(Float, default=0.0)


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
    __table_args__ = (Index("ix_reviews_ticket", "ticket_id"),)

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
    build_errors: Mapped[int] = mapped_column(Integer, default=0)  # Fleet's own failures to verify this build
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()
    failures: Mapped[list[Any]] = mapped_column(default=list)  # failing tests of the last build
    conflict: Mapped[list[Any]] = mapped_column(default=list)  # files that did not apply on the build's parent
    suspects: Mapped[list[Any]] = mapped_column(default=list)  # files the failing tests' tracebacks name
    reason: Mapped[str] = mapped_column(Text, default="")
    merged_sha: Mapped[str | None] = mapped_column(String(64))
    refused_at: Mapped[datetime | None] = mapped_column()  # the target refused its last landing push (a hook)
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


class BudgetHold(Base):
    """What one gate's model calls in flight hold against its attempt's ticket's budget (workers/gateway/attempt.py)."""

    __tablename__ = "budget_holds"

    gate: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: removing a repo never waits on it
    worker: Mapped[str] = mapped_column(String(200))  # a gate lives while its worker beats or its calls go out
    held_usd: Mapped[float] = mapped_column(Float)
    held_at: Mapped[datetime] = mapped_column()


class WebSession(Base):
    """A login of a browser with a token: only the sha256 of the cookie's secret is stored; logging out deletes it."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ForgeSeen(Base):
    """A forge item Fleet has acted on (a comment, a review, a check run, a webhook delivery, an issue): never twice."""

    __tablename__ = "forge_seen"
    __table_args__ = (UniqueConstraint("repo_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    key: Mapped[str] = mapped_column(String(200))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """The outbox: one row per event, written with the status change, sent (and retried) by the reconciler."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "sent_at", "next_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
