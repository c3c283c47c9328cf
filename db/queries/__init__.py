"""Every read and write Fleet makes, one module per noun; `from db import queries` reaches them all."""

from sqlalchemy.orm import Session

from db.queries.baselines import count_baselines, find_baseline, save_baseline
from db.queries.errors import AlreadyExists, NotFound
from db.queries.housekeeping import SETTLED_TICKET, base_commits, clear_attempt_text, open_attempt_ids
from db.queries.leases import Lease, advance, cancel_requested, claim, expire_leases, renew_leases, undelivered
from db.queries.repos import add_repo, delete_repo, get_repo, list_repos, update_repo
from db.queries.scheduling import (
    SCHEDULER_LOCK,
    Pending,
    count_open_attempts,
    in_flight,
    live_slots,
    mark_dispatched,
    pending,
    repo_limits,
    scheduling_lock,
)
from db.queries.stats import attempt_counts, runs_since, spend, ticket_counts
from db.queries.tickets import (
    add_attempt,
    add_review,
    add_ticket,
    add_verification,
    finish_run,
    get_attempt,
    get_ticket,
    list_tickets,
    load_ticket_tree,
    log_event,
    open_attempts,
    review_candidates,
    set_ticket_status,
    stored_verification,
    ticket_events,
)
from db.queries.workers import beat, list_workers

__all__ = [
    "SCHEDULER_LOCK",
    "SETTLED_TICKET",
    "AlreadyExists",
    "Lease",
    "NotFound",
    "Pending",
    "Session",
    "add_attempt",
    "add_repo",
    "delete_repo",
    "add_review",
    "add_ticket",
    "add_verification",
    "advance",
    "attempt_counts",
    "base_commits",
    "beat",
    "cancel_requested",
    "claim",
    "clear_attempt_text",
    "count_baselines",
    "count_open_attempts",
    "expire_leases",
    "find_baseline",
    "finish_run",
    "get_attempt",
    "get_repo",
    "get_ticket",
    "in_flight",
    "list_repos",
    "update_repo",
    "list_tickets",
    "list_workers",
    "live_slots",
    "load_ticket_tree",
    "log_event",
    "mark_dispatched",
    "open_attempt_ids",
    "open_attempts",
    "pending",
    "renew_leases",
    "repo_limits",
    "review_candidates",
    "runs_since",
    "save_baseline",
    "scheduling_lock",
    "set_ticket_status",
    "spend",
    "stored_verification",
    "ticket_counts",
    "ticket_events",
    "undelivered",
]
