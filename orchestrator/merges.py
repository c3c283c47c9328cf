"""The merge queue as the control plane sees it: enqueue an approved diff, eject one, show the queue.

The queue itself runs on the workers (workers/merge_queue.py); this module only writes and reads its rows, and
the caller kicks the dispatcher afterwards so a worker runs a pass. `enqueue(session, ticket_id)` is what approval
calls when a repository delivers by merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db import lifecycle, mergeplan, queries
from db.lifecycle import MergeStatus, TicketStatus
from db.models import MergeEntry, Ticket
from db.specs import RepoSettings
from orchestrator import delivering, gitrepo
from orchestrator.errors import FleetError
from orchestrator.review import Choice, candidates, chosen
from system.branches import NoSuchBranch, check_branch

SHA_LIKE = 7


def enqueue(
    s: queries.Session, ticket_id: int, actor: str = "", choice: Choice = None, target: str | None = None
) -> MergeEntry:
    """Queue the ticket's chosen verified diff (approving it first when it waits for review) for target."""
    ticket = queries.load_ticket_tree(s, ticket_id)
    queries.merge_lock(s, ticket.repo_id)  # two enqueues of one ticket take turns, and the second is refused
    queries.get_ticket(s, ticket_id, lock=True)  # so does a rejection (after the queue's lock: the order passes take)
    delivering.refuse_while_delivering(ticket)
    if any(MergeStatus(e.status) in lifecycle.LIVE_MERGE for e in queries.ticket_entries(s, ticket_id)):
        raise FleetError(f"ticket {ticket_id} is already in the merge queue")
    branch = target or default_target(ticket)
    try:
        check_branch(branch)
    except NoSuchBranch as exc:
        raise FleetError(f"ticket {ticket_id}: {exc}") from None
    attempt_id = _approved_attempt(s, ticket, actor, choice)
    attempt = queries.get_attempt(s, attempt_id)
    entry = queries.add_entry(
        s,
        repo_id=ticket.repo_id,
        ticket_id=ticket.id,
        attempt_id=attempt_id,
        target=branch,
        files=mergeplan.diff_paths(attempt.diff),
        area=list(ticket.area),
        enqueued_by=actor,
    )
    queries.log_event(s, "merge_enqueued", f"into {branch}", ticket_id=ticket.id, attempt_id=attempt_id, actor=actor)
    return entry


def _approved_attempt(s: queries.Session, ticket: Ticket, actor: str, choice: Choice) -> int:
    if ticket.status == TicketStatus.APPROVED.value:
        approvals = [r for r in queries.ticket_reviews(s, ticket.id) if r.decision == "approved"]
        if approvals:
            return approvals[-1].attempt_id
    refusal = f"ticket {ticket.id} is {ticket.status}; only approved tickets and those waiting for review merge"
    lifecycle.require(ticket, TicketStatus.APPROVED, "approve", refusal)
    found = candidates(ticket, queries.rejected_attempt_ids(s, ticket.id))
    if not found:
        raise FleetError(f"ticket {ticket.id} has no verified diff")
    best = chosen(found, choice, ticket.id).attempt
    queries.set_ticket_status(s, ticket, TicketStatus.APPROVED, f"approved by {actor}; in the merge queue")
    queries.add_review(s, ticket_id=ticket.id, attempt_id=best.id, decision="approved", reviewer=actor)
    queries.log_event(s, "approved", "into the merge queue", ticket_id=ticket.id, attempt_id=best.id, actor=actor)
    return best.id


def default_target(ticket: Ticket) -> str:
    """The repository's target_branch, else the branch the ticket was based on, else the one the repository has out."""
    configured = RepoSettings.from_stored(ticket.repo.settings).target_branch
    if configured:
        return configured
    ref = ticket.base_ref.removeprefix("refs/heads/")
    if ref and ref != "HEAD" and not (len(ref) >= SHA_LIKE and all(c in "0123456789abcdef" for c in ref)):
        return ref
    branch = gitrepo.current_branch(Path(ticket.repo.source))
    if branch is None:
        raise FleetError(f"ticket {ticket.id}: name the target branch with --target (the repository has none out)")
    return branch


def eject(s: queries.Session, ticket_id: int, actor: str) -> MergeEntry:
    """Take the ticket's entry out of the queue; the entries behind it are re-verified without it."""
    queries.merge_lock(s, queries.get_ticket(s, ticket_id).repo_id)  # a pass must not write over it unseen
    live = [e for e in queries.ticket_entries(s, ticket_id) if MergeStatus(e.status) in lifecycle.LIVE_MERGE]
    if not live:
        raise FleetError(f"ticket {ticket_id} is not in the merge queue")
    entry = live[-1]
    lifecycle.move(entry, MergeStatus.EJECTED)
    entry.reason = f"removed by {actor}"
    queries.log_event(s, "merge_ejected", entry.reason, ticket_id=ticket_id, attempt_id=entry.attempt_id, actor=actor)
    return entry


def queue_view(s: queries.Session, recent: int = 10) -> dict[str, Any]:
    """The live entries in the order they will land (what each is verified on top of, what it overlaps), and the
    entries that left the queue lately."""
    live = list(queries.live_entries(s))
    items = {e.id: _item(e) for e in live}
    overlaps = _overlapping_per_repo([(e.repo_id, items[e.id]) for e in live])
    tickets = {e.id: e.ticket_id for e in live}
    rows = []
    for repo_id in sorted({e.repo_id for e in live}):
        repo_entries = [e for e in live if e.repo_id == repo_id]
        aware = RepoSettings.from_stored(repo_entries[0].ticket.repo.settings).merge_conflict_aware
        by_id = {e.id: e for e in repo_entries}
        for item in mergeplan.ordered([items[e.id] for e in repo_entries], aware):
            entry = by_id[item.id]
            rows.append(entry_view(entry) | {"overlaps": [tickets[o] for o in overlaps[item.id]]})
    return {"queue": rows, "recent": [entry_view(e) for e in queries.recent_entries(s, recent)]}


def entry_view(e: MergeEntry) -> dict[str, Any]:
    """One entry as `fleet merge status --json` shows it."""
    return {
        "entry": e.id,
        "ticket": e.ticket_id,
        "title": e.ticket.title,
        "repo": e.ticket.repo.name,
        "target": e.target,
        "status": e.status,
        "on_top_of": {"commit": e.parent_sha, "entries": list(e.stack)},
        "build": e.build_sha,
        "builds": e.builds,
        "files": list(e.files),
        "reason": e.reason,
        "merged": e.merged_sha,
    }


def review_overlaps(s: queries.Session, rows: list[dict[str, Any]]) -> dict[int, list[int]]:
    """For `fleet review list`: per ticket waiting for review, the other tickets (waiting, or in a merge queue)
    whose best diff or --area overlaps its own."""
    live = queries.live_entries(s)
    repo_items = [_review_item(s, r) for r in rows if r["candidates"]] + [(e.repo_id, _item(e)) for e in live]
    owner = {i.id: -i.id for _, i in repo_items if i.id < 0} | {e.id: e.ticket_id for e in live}
    found = _overlapping_per_repo(repo_items)
    return {-i.id: sorted({owner[o] for o in found[i.id]} - {-i.id}) for _, i in repo_items if i.id < 0}


def _overlapping_per_repo(repo_items: list[tuple[int, mergeplan.Item]]) -> dict[int, list[int]]:
    """mergeplan.overlapping within each repository: two repositories' calc.py are two files."""
    found: dict[int, list[int]] = {}
    for repo_id in {repo for repo, _ in repo_items}:
        found |= mergeplan.overlapping([item for repo, item in repo_items if repo == repo_id])
    return found


def _review_item(s: queries.Session, row: dict[str, Any]) -> tuple[int, mergeplan.Item]:
    """A ticket waiting for review as the planner sees an entry (its id negated, apart from entries' ids), and
    its repository."""
    files = frozenset(mergeplan.diff_paths(row["candidates"][0]["diff"]))
    ticket = queries.get_ticket(s, row["id"])
    return ticket.repo_id, mergeplan.Item(-row["id"], MergeStatus.WAITING, files, tuple(ticket.area))


def _item(e: MergeEntry) -> mergeplan.Item:
    return mergeplan.Item(e.id, MergeStatus(e.status), frozenset(e.files), tuple(e.area), e.position)
