"""The forge contract (pull requests, their feedback, issues, statuses), as a Protocol GitLab or Gitea can follow.

GitHub's implementation is system/github.py; tests talk to a scripted forge on 127.0.0.1 through the same client.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Protocol

GITHUB_API = "https://api.github.com"
# https://host/owner/name(.git), ssh://git@host/owner/name.git, git@host:owner/name.git
_REMOTE = re.compile(r"^(?:[a-z+]+://[^/]+/|[^@/:]+@[^:]+:)(?P<path>[^?#]+?)(?:\.git)?/?$")


class ForgeError(Exception):
    """The forge refused or failed a request; carries the HTTP status (0: no answer) and its message."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(f"forge answered {status}: {message}" if status else f"forge unreachable: {message}")


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str


@dataclass(frozen=True)
class Remark:
    """One thing said on a pull request: a comment, a review, or a check run that did not pass."""

    key: str  # unique per forge repository: "comment:12", "review:7", "check:99"
    kind: str  # comment, review, check
    author: str
    text: str
    path: str = ""
    line: int = 0
    sha: str = ""  # the commit a check ran on


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    url: str


class Forge(Protocol):
    """What delivery, PR feedback and issue import ask of a forge, for one repository."""

    def open_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        """Open a pull request from branch head into base, or update the open one from head (title and body)."""
        ...

    def add_labels(self, number: int, labels: list[str]) -> None: ...

    def pr_state(self, number: int) -> str:
        """open, closed, or merged."""
        ...

    def set_status(self, sha: str, state: str, description: str, target_url: str) -> None:
        """A commit status (context `fleet/verification`): success, failure, error or pending."""
        ...

    def remarks(self, number: int, head_sha: str) -> list[Remark]:
        """Comments, reviews that request changes, and failed check runs on head_sha, oldest first."""
        ...

    def issues(self, label: str) -> list[Issue]:
        """Open issues (not pull requests) carrying label."""
        ...


def repo_from_remote(url: str) -> str:
    """OWNER/NAME from a remote's URL (https, ssh or scp-like), or "" when it names none."""
    match = _REMOTE.match(url.strip())
    path = match.group("path") if match else ""
    parts = [p for p in path.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else ""


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    """X-Hub-Signature-256 (`sha256=` + HMAC-SHA256 hex of the raw body) checked in constant time."""
    if not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").encode("utf-8", "surrogateescape"))
