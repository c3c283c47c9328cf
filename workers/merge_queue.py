"""The merge queue's pass: plan the speculative builds, send them to be verified, land the front by compare-and-swap.

Any worker may run a pass (after a build's verdict, from the reconciler, on a nudge from the control plane); a
database lock per repository makes them take turns. Landing is exactly-once because the target only moves by
compare-and-swap from the head the build sits on, and a pass that died between moving the target and writing
`merged` finds the build already in the target's history and records it without moving anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from db import lifecycle, mergeplan, policy, queries
from db.engine import Database
from db.lifecycle import LIVE_MERGE, AttemptStatus, MergeStatus, TicketStatus
from db.models import MergeEntry, Repo, Ticket, utcnow
from db.specs import RepoSettings
from system import commit_text
from system.branches import NoSuchBranch, TargetError, remote_head
from system.git import GitError
from system.mirror import MirrorError, ensure_mirror
from system.settings import Settings
from workers import merge_git, scheduler
from workers.merge_git import Stamp
from workers.merge_report import EJECTED_BY, ejection_feedback

log = logging.getLogger(__name__)
_M = MergeStatus
_unreached: dict[tuple[str, str], str] = {}  # (remote, target) -> what this process last logged of it


@dataclass
class Sends:
    """What a pass leaves to send once its transaction has committed."""

    builds: list[int] = field(default_factory=list)
    reopened: bool = False  # an ejected ticket has a new attempt: the scheduler fills free slots


SendBuilds = Callable[[Sequence[int]], int]
SendAttempts = Callable[[Sequence[tuple[int, AttemptStatus]]], int]


def advance_all(
    db: Database, settings: Settings, send_builds: SendBuilds, send_attempts: SendAttempts, redispatch: float
) -> int:
    """A pass over every repository with a live queue (the reconciler's); returns how many builds were sent.

    Builds sent more than `redispatch` seconds ago and still unclaimed are sent again (their message may be lost).
    """
    with db.session() as s:
        repos = queries.queued_repos(s)
    return sum(advance(db, settings, repo_id, send_builds, send_attempts, redispatch) for repo_id in repos)


def advance(
    db: Database,
    settings: Settings,
    repo_id: int,
    send_builds: SendBuilds,
    send_attempts: SendAttempts,
    redispatch: float | None = None,
) -> int:
    """One pass over one repository's queue; returns how many builds were sent to be verified.

    The targets' heads are fetched into the mirror before the lock is taken, so a slow fetch does not hold the
    database; under the lock the head is read again (another pass may have landed meanwhile), which seldom needs
    a fetch, and the compare-and-swap catches a head that moves after that.
    """
    sends = Sends()
    heads = _heads(db, settings, repo_id)
    with db.session() as s:
        queries.merge_lock(s, repo_id)
        wait = settings.redispatch_seconds if redispatch is None else redispatch
        sends.builds += queries.lapsed_builds(s, repo_id, wait)
        entries = list(queries.live_entries(s, repo_id))
        for target, found in heads.items():
            mine = [e for e in entries if e.target == target]
            if isinstance(found, NoSuchBranch):
                for entry in mine:
                    _leave(s, entry, entry.ticket, str(found))
            elif mine:
                _pass(s, settings, Queue(mine[0].ticket.repo, target, mine, *found), sends)
        attempts = scheduler.plan(s, settings) if sends.reopened else []
    send_attempts(attempts)
    return send_builds(list(dict.fromkeys(sends.builds)))


@dataclass
class Queue:
    """One target branch's live entries during a pass, with where the target is now."""

    repo: Repo
    target: str
    entries: list[MergeEntry]
    head: str = ""
    mirror: Path = Path()


def _heads(db: Database, settings: Settings, repo_id: int) -> dict[str, tuple[str, Path] | NoSuchBranch]:
    """Each target branch with a live queue in the repository: its head now, and the worker's mirror holding it;
    or why no entry can ever land there (the repository answered, and has no such branch)."""
    with db.session() as s:
        entries = queries.live_entries(s, repo_id)
        repo = entries[0].ticket.repo if entries else None
        name, source, targets = (repo.name, repo.source, sorted({e.target for e in entries})) if repo else ("", "", [])
    heads: dict[str, tuple[str, Path] | NoSuchBranch] = {}
    for target in targets:
        try:
            heads[target] = _head(settings, repo_id, name, source, target)
        except NoSuchBranch as exc:
            heads[target] = exc
        except (TargetError, MirrorError, GitError) as exc:  # an unreachable remote is no verdict: the next pass tries
            _unreachable(source, name, target, str(exc))
    return heads


def _pass(s: queries.Session, settings: Settings, queue: Queue, sends: Sends) -> None:
    """Plan, write, eject and land until nothing more can land now."""
    rules = RepoSettings.from_stored(queue.repo.settings)
    if not _read_head(settings, queue):
        return
    _record_landed(s, queue.entries, queue.mirror, queue.head)
    for _ in range(2 * len(queue.entries) + 2):  # each turn lands one entry or re-reads a moved head
        live = {e.id: e for e in queue.entries if _M(e.status) in LIVE_MERGE}
        mirror = queue.mirror
        unplaced = [e for e in live.values() if e.position is None] if rules.merge_conflict_aware else []
        touched = _touched(mirror, queue.head, unplaced)
        plan = mergeplan.plan(
            queue.head,
            [_item(e, touched) for e in live.values()],
            rules.merge_slots,
            partial(_build, s, mirror, live),
            rules.merge_conflict_aware,
        )
        _write(s, plan, live, sends)
        for entry_id in plan.ejects:
            sends.reopened |= _eject(s, live[entry_id], queue.head, mirror)
        if plan.land is None:
            return
        entry = live[plan.land]
        try:
            landed = merge_git.land(queue.repo.source, mirror, queue.target, entry.build_sha or "", queue.head)
        except TargetError as exc:  # no verdict on the entry: it waits, saying why, and the next pass tries again
            _refused(queue, entry, str(exc)[:2000])
            return
        if landed:
            _merged(s, entry, queue.head)
            queue.head = entry.build_sha or queue.head
            continue
        log.info("merge queue of %s: %s moved under it; re-verifying on the new head", queue.repo.name, queue.target)
        if not _read_head(settings, queue):
            return


def _refused(queue: Queue, entry: MergeEntry, reason: str) -> None:
    """The target refused the entry's landing push: said in the log when it first does, or says something else,
    not at every pass of a `fleet up` that tries it again."""
    if entry.refused_at is None or entry.reason != reason:
        log.warning("merge queue of %s: %s", queue.repo.name, reason)
    entry.reason, entry.refused_at = reason, utcnow()


def _read_head(settings: Settings, queue: Queue) -> bool:
    """Read the target's head into queue, with the worker's mirror holding it; False when it cannot be read."""
    try:
        queue.head, queue.mirror = _head(settings, queue.repo.id, queue.repo.name, queue.repo.source, queue.target)
    except (TargetError, MirrorError, GitError) as exc:  # an unreachable remote is no verdict: the next pass tries
        _unreachable(queue.repo.source, queue.repo.name, queue.target, str(exc))
        return False
    return True


def _head(settings: Settings, repo_id: int, name: str, source: str, target: str) -> tuple[str, Path]:
    """The target's head now, and the worker's mirror holding it; said in the log when it is read again after the
    target could not be."""
    settings.mirrors_dir.mkdir(parents=True, exist_ok=True)
    head = remote_head(source, target, settings.mirrors_dir)
    mirror = ensure_mirror(settings.mirrors_dir, f"repo-{repo_id}", source, head)
    if _unreached.pop((source, target), None) is not None:
        log.info("merge queue of repo %s, branch %s: read again", name, target)
    return head, mirror


def _unreachable(source: str, name: str, target: str, reason: str) -> None:
    """The target's head could not be read: said in the log when it first cannot, or says something else, not at
    every pass of a `fleet up` that tries it again."""
    if _unreached.get((source, target)) != reason:
        log.warning("merge queue of repo %s, branch %s: %s", name, target, reason)
    _unreached[(source, target)] = reason


def _item(e: MergeEntry, touched: dict[str, set[str]]) -> mergeplan.Item:
    stale = bool(touched.get(e.ticket.base_sha, set()) & set(e.files))
    return mergeplan.Item(
        e.id, _M(e.status), frozenset(e.files), tuple(e.area), e.position, e.parent_sha, e.build_sha, stale
    )


def _touched(mirror: Path, head: str, unplaced: list[MergeEntry]) -> dict[str, set[str]]:
    """Per base commit of the entries still to be ordered, the files the target changed since then."""
    return {base: merge_git.changed_files(mirror, base, head) for base in {e.ticket.base_sha for e in unplaced}}


def _build(
    s: queries.Session, mirror: Path, live: dict[int, MergeEntry], parent: str, item: mergeplan.Item
) -> str | mergeplan.Conflict:
    return merge_git.build_commit(mirror, parent, *build_inputs(s, live[item.id]))


def build_inputs(s: queries.Session, entry: MergeEntry) -> tuple[str, str, Stamp]:
    """What an entry's build commit is made of besides its parent: the diff, the message, the fixed stamp."""
    note = f"Fleet ticket {entry.ticket_id}, landed by the merge queue (entry {entry.id})."
    message = commit_text.commit_message(entry.ticket.title, note)
    return queries.get_attempt(s, entry.attempt_id).diff, message, Stamp(entry.created_at)


def _write(s: queries.Session, plan: mergeplan.Plan, by_id: dict[int, MergeEntry], sends: Sends) -> None:
    """Write one plan's resets, conflicts and builds (lifecycle moves on the rows)."""
    for entry_id in plan.resets:
        entry = by_id[entry_id]
        lifecycle.move(entry, _M.WAITING)
        entry.parent_sha = entry.build_sha = entry.position = entry.lease_token = entry.lease_expires_at = None
        entry.refused_at = None
        entry.stack, entry.failures, entry.conflict, entry.suspects, entry.reason = [], [], [], [], ""
    for entry_id, (parent, conflict) in plan.conflicts.items():
        entry = by_id[entry_id]
        lifecycle.move(entry, _M.BUILDING)
        lifecycle.move(entry, _M.FAILED)
        entry.parent_sha, entry.build_sha, entry.conflict = parent, None, list(conflict.files)
        entry.reason = "does not apply: conflict in " + ", ".join(conflict.files)
        entry.position = queries.next_position(s, entry.repo_id)
    for entry_id, build in plan.builds.items():
        entry = by_id[entry_id]
        lifecycle.move(entry, _M.BUILDING)
        entry.parent_sha, entry.build_sha, entry.stack = build.parent, build.sha, list(build.stack)
        entry.position = queries.next_position(s, entry.repo_id)
        entry.builds, entry.build_errors = entry.builds + 1, 0
        entry.dispatched_at = utcnow()
        sends.builds.append(entry_id)
    s.flush()


def _record_landed(s: queries.Session, entries: list[MergeEntry], mirror: Path, head: str) -> None:
    """A pass that moved the target and died before writing `merged`: its build is in the target's history."""
    for entry in entries:
        if _M(entry.status) == _M.PASSED and entry.build_sha and merge_git.is_ancestor(mirror, entry.build_sha, head):
            _merged(s, entry, entry.parent_sha or head, recovered=True)


def _merged(s: queries.Session, entry: MergeEntry, old: str, recovered: bool = False) -> None:
    lifecycle.move(entry, _M.MERGED)
    entry.merged_sha = entry.build_sha
    how = " (found landed after an interrupted pass)" if recovered else ""
    note = f"{entry.target} moved {old[:12]} -> {(entry.build_sha or '')[:12]}{how}"
    queries.log_event(s, "merged", note, ticket_id=entry.ticket_id, attempt_id=entry.attempt_id, actor=EJECTED_BY)
    queries.notify(s, queries.get_ticket(s, entry.ticket_id), "merged", note)
    s.flush()


def _leave(s: queries.Session, entry: MergeEntry, ticket: Ticket, reason: str) -> None:
    """Out of the queue, said in the ticket's events and notifications; the ticket as it was. Alone, for an entry no
    agent can help (its target is no branch: enqueue it again), the ticket still approved; _eject sends it back."""
    lifecycle.move(entry, _M.EJECTED)
    entry.reason = reason
    queries.log_event(s, "merge_ejected", reason, ticket_id=ticket.id, attempt_id=entry.attempt_id, actor=EJECTED_BY)
    queries.notify(s, ticket, "ejected", reason)


def _eject(s: queries.Session, entry: MergeEntry, head: str, mirror: Path) -> bool:
    """Out of the queue; the ticket goes back to an agent, based on the new head, with what it collided with."""
    ticket = queries.load_ticket_tree(s, entry.ticket_id)
    feedback = ejection_feedback(s, entry, ticket, head, mirror)
    _leave(s, entry, ticket, entry.reason)
    if ticket.status != TicketStatus.APPROVED.value:
        return False
    attempt = queries.get_attempt(s, entry.attempt_id)
    queries.add_review(
        s, ticket_id=ticket.id, attempt_id=attempt.id, decision="rejected", reviewer=EJECTED_BY, feedback=feedback
    )
    queries.set_ticket_status(s, ticket, TicketStatus.REJECTED, f"ejected from the merge queue: {entry.reason}")
    ticket.base_sha = head
    policy.reopen(s, attempt.run, feedback)
    queries.set_ticket_status(s, ticket, TicketStatus.QUEUED, "a new attempt on the new head, after the merge queue")
    s.flush()
    return True
