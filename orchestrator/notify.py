"""Notifications: the outbox rows written with each status change (db.queries.notify) are POSTed to the
repository's notify_url by a reconciler pass, once each, retried with exponential backoff; a slow or dead
webhook never holds up a ticket, because nothing in the pipeline waits for it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx

from db import queries
from db.engine import Database
from db.models import utcnow
from db.specs import RepoSettings
from orchestrator.delivery import scrub, ticket_link
from system.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
MAX_TRIES = 12  # about a day of backoff; then the row stays with its last error and is not tried again
HOLD_SECONDS = 60.0  # a claimed row is left alone that long by other senders


def payload(event: dict[str, Any], shape: str, link: str) -> dict[str, Any]:
    """The JSON sent: Fleet's own, or Slack's incoming-webhook shape ({"text": ...})."""
    body = event | {"url": link}
    if shape != "slack":
        return body
    where = f" <{link}|ticket {event['ticket']}>" if link else f" ticket {event['ticket']}"
    pr = f" (<{_slack(event['pr_url'])}|pull request>)" if event.get("pr_url") else ""
    return {"text": f"Fleet: {event['event']} —{where} {_slack(event['title'])} [{_slack(event['repo'])}]{pr}"}


def _slack(text: object) -> str:
    """text as Slack shows it literally: its `<`, `>` and `&` escaped, so a title cannot mention a channel or
    dress a link (api.slack.com/reference/surfaces/formatting#escaping)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def backoff(tries: int) -> float:
    return float(min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, tries - 1)))


def send_due(db: Database, settings: Settings, client: httpx.Client | None = None) -> int:
    """Send every notification that is due; returns how many were delivered."""
    now = utcnow()
    with db.session() as s:
        rows = queries.due_notifications(s, now, MAX_TRIES)
        todo = []
        for row in rows:
            if queries.claim_notification(s, row, now + timedelta(seconds=HOLD_SECONDS)):
                repo = RepoSettings.from_stored(row_repo_settings(s, row.repo_id))
                link = ticket_link(settings, row.ticket_id) if row.ticket_id else ""
                todo.append((row.id, row.tries + 1, repo.notify_url, payload(row.payload, repo.notify_format, link)))
    sent = 0
    with client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
        for row_id, tries, url, body in todo:
            error = _post(http, url, body, settings)
            with db.session() as s:
                retry_at = utcnow() + timedelta(seconds=backoff(tries))
                queries.notification_done(s, row_id, error, retry_at)
            sent += not error
    return sent


def row_repo_settings(s: queries.Session, repo_id: int) -> dict[str, Any]:
    return next((r.settings for r in queries.list_repos(s) if r.id == repo_id), {})


def _post(http: httpx.Client, url: str, body: dict[str, Any], settings: Settings) -> str:
    """ "" when the webhook took it (2xx), else why not (one line, no credential)."""
    if not url:
        return "the repository has no notify_url any more"
    try:
        answer = http.post(url, json=body)
    except httpx.HTTPError as exc:
        return scrub(f"{type(exc).__name__}: {exc}", settings)[:500]
    if answer.is_success:
        return ""
    log.info("notification to its webhook answered %s", answer.status_code)
    return f"the webhook answered {answer.status_code}"
