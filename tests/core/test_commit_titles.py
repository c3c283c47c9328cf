"""A ticket's title in the commits Fleet delivers (a branch, a push or a pull request, and the merge queue's) closes
no issue, adds no trailer or paragraph, and loses no line to git's comment cleanup; its words stay."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from db import queries
from db.models import MergeEntry
from orchestrator.delivery import commit_diff
from orchestrator.review import Candidate, commit_message
from tests.conftest import Fleet
from workers import merge_git
from workers.merge_queue import build_inputs

# GitHub's rule ("Linking a pull request to an issue"): a closing keyword, an optional colon, then #N,
# OWNER/REPOSITORY#N or an issue's URL.
KEYWORDS = ("close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved")
GITHUB_CLOSES = re.compile(
    rf"\b(?:{'|'.join(KEYWORDS)}):?\s+(?:#\d+|[\w.-]+/[\w.-]+#\d+|https?://\S+/issues/\d+)", re.IGNORECASE
)
REFERENCES = ("#12", "owner/repo#3", "https://github.com/o/r/issues/9")
HOSTILE = [f"Tidy up; {keyword} {ref}" for keyword in KEYWORDS for ref in REFERENCES] + [
    f"{keyword.upper()}: {ref}" for keyword, ref in zip(("fixes", "closes", "resolves"), REFERENCES, strict=True)
]
FORGED = "#12 is broken\n\nCo-authored-by: Mallory <m@evil.example>\nSigned-off-by: Mallory <m@evil.example>"


def _git(repo: Path, *args: str, text: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True, text=True, check=True).stdout


def _paragraphs(message: str) -> int:
    return len(message.strip("\n").split("\n\n"))


def _diff(repo: Path) -> str:
    calc = repo / "calc.py"
    before = calc.read_text()
    calc.write_text(before.replace("a - b", "a + b"))
    diff = _git(repo, "diff")
    calc.write_text(before)
    return diff


def _delivered_messages(fleet: Fleet, titles: list[str]) -> dict[str, list[str]]:
    """Each title, submitted as a user would, then committed as approve and as the merge queue commit it: the
    messages read back with `git log --format=%B`."""
    repo = fleet.sample_repo()
    batch = fleet.tmp / "tickets.json"
    batch.write_text(json.dumps([{"repo": "calc", "title": t, "agent_cmd": "true"} for t in titles]))
    tickets = [int(t["id"]) for t in fleet.submit("--file", str(batch))]
    diff, found = _diff(repo), {}
    with fleet.db().session() as s:
        for ticket_id, title in zip(tickets, titles, strict=True):
            ticket = queries.get_ticket(s, ticket_id)
            [attempt] = queries.open_attempts(s, ticket_id)
            attempt.diff = diff
            entry = MergeEntry(repo_id=ticket.repo_id, ticket_id=ticket_id, attempt_id=attempt.id, target="main")
            s.add(entry)
            s.flush()
            approved = commit_diff(
                repo, ticket.base_sha, diff, commit_message(ticket, Candidate(attempt, (attempt,), 1, 1))
            )
            queued = merge_git.build_commit(repo, ticket.base_sha, *build_inputs(s, entry))
            assert isinstance(queued, str)
            found[title] = [_git(repo, "log", "-1", "--format=%B", sha) for sha in (approved, queued)]
    return found


def test_a_closing_reference_in_a_title_closes_nothing_and_its_words_stay(embedded: Fleet) -> None:
    for title, messages in _delivered_messages(embedded, HOSTILE).items():
        for message in messages:
            subject = message.splitlines()[0]
            assert GITHUB_CLOSES.search(message) is None, message
            assert subject.replace('"', "") == title  # only quotes around the keyword were added
            assert _paragraphs(message) == 2 and message.rstrip("\n").endswith(")."), message


def test_a_title_cannot_add_trailers_or_paragraphs_or_lose_its_line_to_comment_cleanup(embedded: Fleet) -> None:
    [messages] = _delivered_messages(embedded, [FORGED]).values()
    for message in messages:
        assert _git(Path("/"), "interpret-trailers", "--parse", text=message) == ""
        assert _paragraphs(message) == 2
        assert "Co-authored-by: Mallory" in message.splitlines()[0]  # the words stay, on the subject line
        cleaned = _git(Path("/"), "stripspace", "--strip-comments", text=message)
        assert cleaned.splitlines()[0].strip().startswith("#12 is broken")


def test_invisible_characters_in_a_title_are_written_out_and_do_not_hide_a_keyword(embedded: Fleet) -> None:
    [messages] = _delivered_messages(embedded, ["fixes\u200b #12 \u202eevil"]).values()
    for message in messages:
        assert message.splitlines()[0] == "fixes<U+200B> #12 <U+202E>evil"
