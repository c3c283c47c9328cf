"""What an ejected entry's agent is told: the change it collided with (ticket and title), and the conflict or the
failing tests, as the feedback of its next attempt (the same route as a reviewer's rejection with feedback).

A build that ran hidden tests names no test and quotes no reason to the agent: its code ran beside them, and the
names of failing tests and the words of a reason are texts it could have written (a hidden test, encoded). The
entry's reason, which people read, keeps them."""

from __future__ import annotations

from pathlib import Path

from db import queries
from db.models import MergeEntry, Ticket
from db.specs import RepoSettings
from workers import merge_git

Session = queries.Session

EJECTED_BY = "merge queue"
MAX_NAMED = 3
MAX_TESTS = 10
UNNAMED = (
    "Tests fail with your change on top of it. They are not named here: the repository's hidden tests ran in that"
    " build, beside its code; your next attempt's verification names the visible tests that fail."
)
UNQUOTED = (
    "Its verification on top of it failed. What it said is not quoted here: the repository's hidden tests ran in"
    " that build, beside its code."
)


def collided_with(s: Session, entry: MergeEntry, ticket: Ticket, head: str, mirror: Path) -> list[str]:
    """The changes that reached the target since the diff's base, those touching its files (or conflict) first."""
    files = tuple(entry.conflict) or tuple(dict.fromkeys([*entry.suspects, *entry.files]))
    commits = merge_git.commits_between(mirror, ticket.base_sha, head, files) or merge_git.commits_between(
        mirror, ticket.base_sha, head
    )
    landed = {e.merged_sha: e for e in queries.ticket_entries_landed(s, [sha for sha, _ in commits])}
    named = []
    for sha, subject in commits[:MAX_NAMED]:
        other = landed.get(sha)
        if other is not None:
            named.append(f'ticket {other.ticket_id} "{_line(other.ticket.title)}" (commit {sha[:12]})')
        else:
            named.append(f'commit {sha[:12]} "{_line(subject)}" (not from Fleet)')
    return named


def ejection_feedback(s: Session, entry: MergeEntry, ticket: Ticket, head: str, mirror: Path) -> str:
    """The next attempt's feedback; entry.reason becomes its one-line summary."""
    named = collided_with(s, entry, ticket, head, mirror)
    against = "; ".join(named) or "the target's head"
    lines = [
        f"The merge queue could not land your change on {entry.target} (now at commit {head[:12]}).",
        f"It collided with: {against}.",
    ]
    if entry.conflict:
        files = ", ".join(entry.conflict)
        lines.append(f"Conflict: your diff no longer applies to {files}, which that change also edited.")
        entry.reason = f"conflict in {files} with {against}"
    elif entry.failures:
        tests = entry.failures[:MAX_TESTS]
        more = f" and {len(entry.failures) - MAX_TESTS} more" if len(entry.failures) > MAX_TESTS else ""
        listed = "These tests fail with your change on top of it: " + ", ".join(tests) + more + "."
        lines.append(UNNAMED if _ran_hidden_tests(ticket) else listed)
        entry.reason = f"{', '.join(tests[:3])}{more} fail on top of {against}"
    else:
        quoted = f"Its verification on top of it failed: {entry.reason or 'no reason recorded'}."
        lines.append(UNQUOTED if _ran_hidden_tests(ticket) else quoted)
        entry.reason = f"{entry.reason or 'failed'} on top of {against}"
    lines.append("Your new attempt starts from that commit: make the change again on top of it.")
    return "\n".join(lines)


def _ran_hidden_tests(ticket: Ticket) -> bool:
    """True when the ticket's builds ran hidden tests: the repository's, or its own (a task's test patch)."""
    return bool(ticket.hidden_patch or RepoSettings.from_stored(ticket.repo.settings).hidden_tests)


def _line(text: str) -> str:
    return " ".join(text.split())[:200]
