"""Delivery: what approving a verified diff does, per repository (`deliver`): a branch, a push, a pull request.

`deliver = merge` never reaches `deliver()`: approval (orchestrator/approval.py) puts the diff in the merge queue.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from db.models import Attempt, Ticket
from db.specs import RepoSettings
from orchestrator.errors import FleetError
from orchestrator.gitrepo import remote_url
from system.commit_text import CONTROL, defused
from system.credentials import shown_url
from system.forge import Forge, ForgeError, repo_from_remote
from system.git import GitError, git
from system.github import GitHubForge
from system.mirror import MirrorError, ensure_mirror, is_url
from system.settings import Settings


@dataclass(frozen=True)
class Shipment:
    """One verified diff to deliver, as approve read it from the database."""

    ticket_id: int
    repo_key: str  # the mirror's name, repo-<id>
    source: str  # the folder or URL the repository was registered with
    base_sha: str
    diff: str
    message: str  # the commit message
    title: str  # the PR's title
    report: str  # the PR's body: the verification report
    settings: RepoSettings
    verdict: str = "passed"


@dataclass
class Delivered:
    """Where the diff went: the branch and commit, the remote pushed to, the pull request."""

    branch: str
    commit: str
    remote: str = ""
    pr_url: str = ""
    pr_number: int | None = None
    notes: list[str] = field(default_factory=list)
    mirror: str = ""  # where the branch is when it is in Fleet's mirror (a repository registered by URL)


def branch_name(ticket_id: int) -> str:
    return f"fleet/ticket-{int(ticket_id)}"


def deliver(settings: Settings, item: Shipment) -> Delivered:
    """Deliver item as its repository's `deliver` setting says; FleetError (one line, no credential) if it cannot."""
    mode = item.settings.deliver
    if mode == "merge":
        raise FleetError("deliver = merge lands through the merge queue (fleet merge enqueue), not delivered at once")
    mirror = _mirror(settings, item)
    done = Delivered(branch_name(item.ticket_id), _commit(mirror, item))
    if mode == "branch":
        return _local_branch(mirror, item, done)
    done.remote = remote_of(item)
    _push(mirror, done)
    if mode == "pr":
        _pull_request(settings, item, done)
    return done


def _mirror(settings: Settings, item: Shipment) -> Path:
    try:
        return ensure_mirror(settings.mirrors_dir, item.repo_key, item.source, item.base_sha)
    except MirrorError as exc:
        raise FleetError(f"cannot read {shown_url(item.source)}: {scrub(exc.reason, settings)}") from None


def commit_diff(mirror: Path, base_sha: str, diff: str, message: str) -> str:
    """A commit of diff on base_sha, made with a private index: no worktree, no hooks, nothing run."""
    with tempfile.TemporaryDirectory(prefix="fleet-index-") as tmp:
        index = Path(tmp) / "index"
        git("read-tree", base_sha, cwd=mirror, index_file=index)
        git("apply", "--cached", "--whitespace=nowarn", "-", cwd=mirror, input=diff, index_file=index)
        tree = git("write-tree", cwd=mirror, index_file=index).strip()
    return git("commit-tree", tree, "-p", base_sha, "-F", "-", cwd=mirror, input=message).strip()


def _commit(mirror: Path, item: Shipment) -> str:
    try:
        return commit_diff(mirror, item.base_sha, item.diff, item.message)
    except GitError as exc:
        raise FleetError(f"the diff no longer applies to {item.base_sha[:12]}: {exc.stderr or exc}") from None


def _local_branch(mirror: Path, item: Shipment, done: Delivered) -> Delivered:
    """The branch in the registered folder; a repository registered by URL keeps it in Fleet's mirror."""
    target = str(mirror) if is_url(item.source) else item.source
    try:
        git("push", "--force", "--end-of-options", target, f"{done.commit}:refs/heads/{done.branch}", cwd=mirror)
    except GitError as exc:
        raise FleetError(f"could not create branch {done.branch} in {target}: {exc.stderr or exc}") from None
    done.mirror = target if is_url(item.source) else ""
    return done


def remote_of(item: Shipment) -> str:
    """Where push and pr deliver: the `remote` setting, the URL the repo was registered by, or its folder's origin."""
    remote = item.settings.remote or (item.source if is_url(item.source) else remote_url(Path(item.source)))
    if not remote:
        where = shown_url(item.source)
        raise FleetError(f"deliver = {item.settings.deliver} needs a remote: set --remote, or give {where} one")
    return remote


def _push(mirror: Path, done: Delivered) -> None:
    """Force the ticket's own branch: a later verified attempt replaces the earlier one (and updates its PR)."""
    try:
        git("push", "--force", "--end-of-options", done.remote, f"{done.commit}:refs/heads/{done.branch}", cwd=mirror)
    except GitError as exc:
        raise FleetError(f"could not push {done.branch} to {shown_url(done.remote)}: {exc.stderr or exc}") from None


def forge_for(settings: Settings, repo: RepoSettings, remote: str) -> Forge:
    """The forge client of a repository: GitHub (or GitHub Enterprise at forge_url) with the worker's token."""
    name = repo.forge_repo or repo_from_remote(remote)
    if not name:
        raise FleetError(f"cannot tell OWNER/NAME from {shown_url(remote)}: set --forge-repo")
    token = settings.github_token.get_secret_value() or settings.git_token.get_secret_value()
    return GitHubForge(name, token, repo.forge_url)


def _pull_request(settings: Settings, item: Shipment, done: Delivered) -> None:
    forge = forge_for(settings, item.settings, done.remote)
    base = item.settings.target_branch or _default_branch(done.remote)
    link = ticket_link(settings, item.ticket_id)
    try:
        pr = forge.open_pr(done.branch, base, item.title, item.report, item.settings.pr_draft)
        forge.add_labels(pr.number, list(item.settings.pr_labels))
        forge.set_status(done.commit, "success", "Fleet verified this diff", link)
    except ForgeError as exc:
        raise FleetError(f"pushed {done.branch}, but the pull request failed: {scrub(str(exc), settings)}") from None
    done.pr_url, done.pr_number = pr.url, pr.number


def _default_branch(remote: str) -> str:
    """The branch the remote's HEAD names (what a PR targets unless target_branch says otherwise)."""
    try:
        out = git("ls-remote", "--symref", "--end-of-options", remote, "HEAD", cwd=Path("/"))
    except GitError as exc:
        raise FleetError(f"cannot read {shown_url(remote)}: {exc.stderr or exc}; set --target-branch") from None
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/"):
            return line.split()[1].removeprefix("refs/heads/")
    raise FleetError(f"{shown_url(remote)} names no default branch; set --target-branch")


def ticket_link(settings: Settings, ticket_id: int) -> str:
    return f"{settings.public_url.rstrip('/')}/tickets/{ticket_id}" if settings.public_url else ""


def scrub(text: str, settings: Settings) -> str:
    """text without any of the credentials Fleet holds (a forge or git may echo what it was sent)."""
    for secret in (settings.git_token, settings.github_token, settings.webhook_secret):
        value = secret.get_secret_value()
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def report(ticket: Ticket, attempt: Attempt, link: str) -> str:
    """The pull request's body: what verification found, `Fixes #N` for an imported issue, then the ticket's text
    verbatim in a code block. The text may be a forge issue anyone could write: as Markdown it could forge a report
    of its own, hide Fleet's behind an HTML comment, mention people or close other issues on merge."""
    v = attempt.verification
    fixed = ", ".join(code_span(t) for t in (v.fail_to_pass if v else [])[:50]) or "none named"
    flags = "; ".join(code_span(str(f)) for f in (v.flags if v else [])) or "none"
    attempts = sum(len(run.attempts) for run in ticket.runs)
    lines = [
        "### Verified by Fleet",
        f"- Fixed (failing before, passing now): {fixed}",
        f"- Still passing: {v.pass_to_pass if v else 0} test(s)",
        f"- Flags: {flags}",
        f"- Agent: {attempt.run.agent} (run {attempt.run.number}, attempt {attempt.number}; {attempts} in all)",
        f"- Cost: ${sum(a.cost_usd for run in ticket.runs for a in run.attempts):.4f}",
        f"- Ticket: {link or f'Fleet ticket {ticket.id}'}",
    ]
    if ticket.issue_number:
        lines += ["", f"Fixes #{ticket.issue_number}"]
    if text := ticket.body.strip()[:20_000]:
        lines += ["", "### The ticket", *verbatim(text)]
    return "\n".join(lines) + "\n"


def code_span(text: str) -> str:
    """text as one inline code span on one line: a test's name or a flag comes from the diff's own tests and
    files, and could otherwise end the span, start a line of its own or an HTML comment (or close an issue, in the
    commit a squash merge makes of the body)."""
    flat = defused(CONTROL.sub(" ", text))
    fence = _fence(flat, 1)
    return f"{fence} {flat} {fence}"


def verbatim(text: str) -> list[str]:
    """text as a fenced code block: its fence longer than any run of backticks in it, so nothing in it ends it;
    with its closing references defused, since a squash merge writes the body into the commit, as text."""
    text = defused(text)
    fence = _fence(text, 3)
    return [fence + "text", text, fence]


def _fence(text: str, least: int) -> str:
    """Backticks, at least `least` of them and more than any run of backticks in text: nothing in it ends them."""
    return "`" * max(least, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
