"""POST /api/hooks/github: GitHub's webhooks, signed with FLEET_WEBHOOK_SECRET (X-Hub-Signature-256).

A delivery is acted on once (its X-GitHub-Delivery id, and each comment, review or check by its own id, which the
reconciler's poll shares), and answered at once: the new attempt is only written and the scheduler kicked.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from db import queries
from db.specs import RepoSettings
from orchestrator import pr_feedback
from orchestrator.web.state import WebState, web_state
from system.forge import repo_from_remote, signature_ok
from system.github import webhook_remarks

router = APIRouter(prefix="/api/hooks", tags=["hooks"])
State = Annotated[WebState, Depends(web_state)]


@router.post("/github")
async def github_hook(
    request: Request,
    state: State,
    x_hub_signature_256: Annotated[str, Header(description="sha256= and the HMAC of the body")] = "",
    x_github_event: Annotated[str, Header(description="The event: issue_comment, pull_request_review, ...")] = "",
    x_github_delivery: Annotated[str, Header(description="The delivery id, acted on once")] = "",
) -> dict[str, Any]:
    """Feedback on Fleet's pull requests from GitHub; refused (401) unless signed with the webhook secret."""
    body = await request.body()
    if not signature_ok(state.settings.webhook_secret.get_secret_value(), body, x_hub_signature_256):
        raise HTTPException(status_code=401, detail="bad or missing X-Hub-Signature-256")
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=400, detail="the body is not JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(status_code=400, detail="the body is not a JSON object")
    try:
        name, numbers, remarks = webhook_remarks(x_github_event, payload)
    except (KeyError, TypeError, ValueError, AttributeError):  # a field of another type than GitHub's
        raise HTTPException(status_code=400, detail=f"a {x_github_event} event without its fields") from None
    started = await run_in_threadpool(_handle, state, name, numbers, x_github_delivery, remarks)
    return {"event": x_github_event, "attempts": started}


def _handle(state: WebState, name: str, numbers: list[int], delivery: str, remarks: list[Any]) -> list[int]:
    tickets = _tickets(state, name, numbers, delivery)
    return [a for ticket in tickets if (a := _act(state, ticket, remarks)) is not None]


def _tickets(state: WebState, name: str, numbers: list[int], delivery: str) -> list[int]:
    """The tickets whose PRs the delivery is about, if it was not handled before."""
    found = []
    with state.db.session() as s:
        for repo in queries.list_repos(s):
            stored = RepoSettings.from_stored(repo.settings)
            forge_repo = stored.forge_repo or repo_from_remote(pr_feedback.remote_for(repo.source, repo.settings))
            if not name or forge_repo.lower() != name.lower():
                continue
            if delivery and not queries.first_sight(s, repo.id, f"delivery:{delivery}"):
                return []  # GitHub redelivers with the same id
            found += [t.id for n in numbers if (t := queries.ticket_by_pr(s, repo.id, n))]
    return found


def _act(state: WebState, ticket_id: int, remarks: list[Any]) -> int | None:
    return pr_feedback.apply(state.db, state.dispatcher, state.settings, ticket_id, remarks)
