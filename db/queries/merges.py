"""The merge queue's rows: entries, the lock one pass holds per repository, and the fenced writes of a build."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Update, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from db import lifecycle
from db.lifecycle import LIVE_MERGE, MergeStatus
from db.models import MergeEntry, utcnow
from db.queries.leases import _changed

MERGE_LOCK = 0x6D65726765  # "merge": one queue pass per repository at a time, across processes and machines
LIVE = [s.value for s in LIVE_MERGE]


def merge_lock(s: Session, repo_id: int) -> None:
    """Serialize passes over one repository's queue (SQLite's write lock is already held: BEGIN IMMEDIATE)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MERGE_LOCK * 1_000_003 + repo_id})


def add_entry(s: Session, **fields: Any) -> MergeEntry:
    entry = MergeEntry(**fields)
    s.add(entry)
    s.flush()
    return entry


def get_entry(s: Session, entry_id: int) -> MergeEntry | None:
    return s.get(MergeEntry, entry_id)


def live_entries(s: Session, repo_id: int | None = None) -> Sequence[MergeEntry]:
    """Entries still in a queue, oldest first."""
    query = select(MergeEntry).where(MergeEntry.status.in_(LIVE)).order_by(MergeEntry.id)
    if repo_id is not None:
        query = query.where(MergeEntry.repo_id == repo_id)
    return s.scalars(query).unique().all()


def recent_entries(s: Session, limit: int = 20) -> Sequence[MergeEntry]:
    """Entries that left the queue lately (merged or ejected), newest first."""
    query = select(MergeEntry).where(MergeEntry.status.not_in(LIVE)).order_by(MergeEntry.id.desc()).limit(limit)
    return s.scalars(query).unique().all()


def ticket_entries(s: Session, ticket_id: int) -> Sequence[MergeEntry]:
    query = select(MergeEntry).where(MergeEntry.ticket_id == ticket_id).order_by(MergeEntry.id)
    return s.scalars(query).unique().all()


def queued_repos(s: Session) -> list[int]:
    """Repositories with a live merge queue."""
    return list(s.scalars(select(MergeEntry.repo_id).where(MergeEntry.status.in_(LIVE)).distinct()))


_REFUSED = aliased(MergeEntry)
# A target whose landing push was refused (a protected branch, a declining hook) and not reset since: what waits
# behind it waits for a person, not for a worker. Its builds still running are work: their verdicts are to come.
_PARKED = exists().where(
    _REFUSED.repo_id == MergeEntry.repo_id,
    _REFUSED.target == MergeEntry.target,
    _REFUSED.status.in_(LIVE),
    _REFUSED.refused_at.is_not(None),
)
_COUNT_WORK = select(func.count(MergeEntry.id)).where(
    MergeEntry.status.in_(LIVE), or_(MergeEntry.status == MergeStatus.BUILDING.value, ~_PARKED)
)


def count_merge_work(s: Session | Connection) -> int:
    """The live entries a worker that stops when idle waits for: none of a target that refused a landing push
    (refused_entries) but its builds still running."""
    return int(s.scalar(_COUNT_WORK) or 0)


def refused_entries(s: Session) -> Sequence[MergeEntry]:
    """Live entries whose landing push the target refused, oldest first: they wait until a person lets it land."""
    query = select(MergeEntry).where(MergeEntry.status.in_(LIVE), MergeEntry.refused_at.is_not(None))
    return s.scalars(query.order_by(MergeEntry.id)).unique().all()


def next_position(s: Session, repo_id: int) -> int:
    top = s.scalar(select(func.max(MergeEntry.position)).where(MergeEntry.repo_id == repo_id))
    return int(top or 0) + 1


def claim_build(s: Session, entry: MergeEntry, build_sha: str, token: str, seconds: float) -> bool:
    """Take the verification of this very build, unless another worker holds it (a duplicate message).

    Under the queue's lock: a pass writes only the columns it changed, so a claim or a verdict landing between
    its read and its write would survive a reset it did not see (a stale verdict on a new build).
    """
    entry_id = entry.id
    merge_lock(s, entry.repo_id)
    now = utcnow()
    result = s.execute(
        update(MergeEntry)
        .where(
            MergeEntry.id == entry_id,
            MergeEntry.status == MergeStatus.BUILDING.value,
            MergeEntry.build_sha == build_sha,
            or_(MergeEntry.lease_token.is_(None), MergeEntry.lease_expires_at < now),
        )
        .values(lease_token=token, lease_expires_at=now + timedelta(seconds=seconds))
    )
    return _changed(result) == 1


def renew_build(s: Session, entry_id: int, token: str, seconds: float) -> bool:
    result = s.execute(
        update(MergeEntry)
        .where(MergeEntry.id == entry_id, MergeEntry.lease_token == token)
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
    )
    return _changed(result) == 1


def finish_build(s: Session, build: tuple[int, int, str], token: str, verdict: MergeStatus, **values: Any) -> bool:
    """Record the verdict of build (repository, entry, build commit), only while token still holds that very
    build: a reset, a rebuild or a lost lease refuses the write. Under the queue's lock, as claim_build says."""
    repo_id, entry_id, build_sha = build
    merge_lock(s, repo_id)
    sources, moved = lifecycle.bulk(verdict, among=[MergeStatus.BUILDING])
    result = s.execute(
        _held(entry_id, build_sha, token)
        .where(MergeEntry.status.in_(sources))
        .values(**moved, lease_token=None, lease_expires_at=None, updated_at=utcnow(), **values)
    )
    return _changed(result) == 1


def release_build(s: Session, build: tuple[int, int, str], token: str, reason: str) -> bool:
    """Give back a build Fleet could not verify (no verdict): unclaimed, counted in build_errors, with reason, and
    stamped as sent now, so that lapsed_builds sends it again after the redispatch wait. Only while token still
    holds that very build, under the queue's lock, as finish_build."""
    repo_id, entry_id, build_sha = build
    merge_lock(s, repo_id)
    result = s.execute(
        _held(entry_id, build_sha, token)
        .where(MergeEntry.status == MergeStatus.BUILDING.value)
        .values(
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=utcnow(),
            build_errors=MergeEntry.build_errors + 1,
            reason=reason,
            updated_at=utcnow(),
        )
    )
    return _changed(result) == 1


def _held(entry_id: int, build_sha: str, token: str) -> Update:
    """An update of the entry while token holds that very build: a reset, a rebuild or a lost lease matches none."""
    return update(MergeEntry).where(
        MergeEntry.id == entry_id, MergeEntry.build_sha == build_sha, MergeEntry.lease_token == token
    )


def lapsed_builds(s: Session, repo_id: int, redispatch_seconds: float) -> list[int]:
    """Builds whose worker died (lease expired) or whose message was lost: released and stamped as sent again."""
    now = utcnow()
    cutoff = now - timedelta(seconds=redispatch_seconds)
    expired = MergeEntry.lease_token.is_not(None) & (MergeEntry.lease_expires_at < now)
    unclaimed = MergeEntry.lease_token.is_(None) & (MergeEntry.dispatched_at <= cutoff)
    ids = list(
        s.scalars(
            select(MergeEntry.id).where(
                MergeEntry.repo_id == repo_id,
                MergeEntry.status == MergeStatus.BUILDING.value,
                or_(expired, unclaimed),
            )
        )
    )
    if ids:
        s.execute(
            update(MergeEntry)
            .where(MergeEntry.id.in_(ids))
            .values(lease_token=None, lease_expires_at=None, dispatched_at=now)
        )
    return ids


def ticket_entries_landed(s: Session, shas: Sequence[str]) -> Sequence[MergeEntry]:
    """The merged entries whose commits are among shas."""
    if not shas:
        return []
    return s.scalars(select(MergeEntry).where(MergeEntry.merged_sha.in_(list(shas)))).unique().all()
