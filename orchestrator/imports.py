"""Tickets from forge issues: `fleet import github OWNER/REPO --label L`, and a reconciler pass for repositories
with an import_label. An issue becomes one ticket, once (its number is kept on the ticket and checked first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from db import queries
from db.engine import Database
from db.specs import RepoSettings, TicketSpec
from db.spectypes import MAX_BODY, MAX_TITLE
from orchestrator.delivery import forge_for, scrub
from orchestrator.dispatch import AgentRule
from orchestrator.errors import FleetError
from orchestrator.pr_feedback import remote_for
from orchestrator.sources import BaseRefs
from orchestrator.tickets import create
from system.forge import ForgeError, Issue, repo_from_remote
from system.settings import Settings

if TYPE_CHECKING:
    from orchestrator.dispatch import Dispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    created: list[int]  # ticket ids made now
    known: int  # issues that already had a ticket


def find_repo(db: Database, forge_repo: str) -> str:
    """The registered repository whose forge repository is OWNER/NAME."""
    with db.session() as s:
        for repo in queries.list_repos(s):
            stored = RepoSettings.from_stored(repo.settings)
            name = stored.forge_repo or repo_from_remote(remote_for(repo.source, repo.settings))
            if name.lower() == forge_repo.lower():
                return repo.name
    raise FleetError(
        f"no registered repository is {forge_repo} on the forge (fleet repo add NAME URL, or --forge-repo)"
    )


def import_issues(db: Database, dispatcher: Dispatcher, settings: Settings, repo_name: str, label: str) -> Imported:
    """Open issues with label become tickets of repo_name; issues already imported are left alone."""
    with db.session() as s:
        repo = queries.get_repo(s, repo_name)
        stored = RepoSettings.from_stored(repo.settings)
        remote = remote_for(repo.source, repo.settings)
    try:
        issues = forge_for(settings, stored, remote).issues(label)
    except ForgeError as exc:
        raise FleetError(f"cannot read the issues of {repo_name}: {scrub(str(exc), settings)}") from None
    created, known = [], 0
    agents = AgentRule(dispatcher, settings.agent_classes)
    refs = BaseRefs(settings.mirrors_dir)
    for issue in issues:
        with db.session() as s:
            repo = queries.get_repo(s, repo_name)
            if queries.ticket_by_issue(s, repo.id, issue.number) or not queries.first_sight(
                s, repo.id, f"issue:{issue.number}"
            ):
                known += 1
                continue
            try:
                ticket = create(s, _spec(repo_name, issue), settings.home, "import", agents, refs, "", issue.number)
            except FleetError as exc:  # one issue that cannot be a ticket never stops the others
                log.warning("issue #%s of %s was not imported: %s", issue.number, repo_name, exc)
                s.rollback()
                continue
            created.append(ticket.id)
    if created:
        dispatcher.kick(db, settings)
    return Imported(created, known)


def _spec(repo: str, issue: Issue) -> TicketSpec:
    body = f"{issue.body}\n\n(Imported from issue #{issue.number}: {issue.url})".strip()
    return TicketSpec(
        repo=repo, title=" ".join(issue.title.split())[:MAX_TITLE] or f"Issue #{issue.number}", body=body[:MAX_BODY]
    )


def import_pass(db: Database, dispatcher: Dispatcher, settings: Settings) -> int:
    """The reconciler's pass: every repository with an import_label imports its new labelled issues."""
    with db.session() as s:
        wanted = [
            (r.name, str(r.settings.get("import_label")))
            for r in queries.list_repos(s)
            if r.settings.get("import_label")
        ]
    made = 0
    for name, label in wanted:
        try:
            made += len(import_issues(db, dispatcher, settings, name, label).created)
        except FleetError as exc:
            log.warning("importing issues of %s failed: %s", name, exc)
    return made
