"""Ticket text in a commit message: one subject line that closes no issue, then the deliverer's own paragraph.

A title may be anyone's words (an issue imported from a forge). In a commit that reaches the default branch,
`fixes #12` (or `resolves owner/repo#3`, `closes <an issue's URL>`) makes GitHub close that issue, and a newline
would let the title add a paragraph or trailers (`Co-authored-by:`) of its own. The only issue a delivery closes
on purpose is the ticket's own imported one, by the `Fixes #N` Fleet writes in the pull request's body.
"""

from __future__ import annotations

import re

from system.invisible import invisible_shown

# GitHub's closing keywords, whole words in any case, when what follows could name an issue: a colon and spaces,
# then #N, GH-N, OWNER/REPO#N or an issue's (or pull request's) URL. Looser than GitHub's own rule on purpose: no
# space, or a space GitHub may count, still counts here.
CLOSING = re.compile(
    r"\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b"
    r"(?=[\s:]*(?:[\w.-]+/[\w.-]+)?(?:#|gh-)\d|[\s:]*\S*/(?:issues|pull)/\d)",
    re.IGNORECASE,
)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # line breaks and controls: never in one line
COMMENT = "#"  # git's default core.commentChar: a message edited again (amend, rebase, revert) loses such lines


def defused(text: str) -> str:
    """text with each closing keyword that precedes an issue reference in quotes (`"fixes" #12`): read the same
    by people, no longer a keyword followed by a reference for GitHub."""
    return CLOSING.sub(r'"\1"', text)


def subject(title: str) -> str:
    """title as one line that closes no issue: controls and line breaks become spaces, invisible characters are
    written out, and a leading `#` gets a space before it (else editing the commit again would drop the line)."""
    line = defused(" ".join(CONTROL.sub(" ", invisible_shown(title)).split()))
    return f" {line}" if line.startswith(COMMENT) else line or "(no title)"


def commit_message(title: str, note: str) -> str:
    """The subject made of the title, a blank line, then note (the deliverer's own words, never ticket text)."""
    return f"{subject(title)}\n\n{note}\n"
