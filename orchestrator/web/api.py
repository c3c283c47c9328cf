"""The JSON API under /api: the CLI's views and actions over HTTP, guarded by token roles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from db import dashboard, queries, tokens
from db.lifecycle import TicketStatus
from db.specs import RepoSpec, TicketSpec, TokenSpec
from orchestrator import approval, merges, views
from orchestrator import review as reviews
from orchestrator.errors import FleetError, Unrunnable
from orchestrator.repos import register_repo
from orchestrator.tickets import submit as submit_tickets
from orchestrator.web import figures
from orchestrator.web.auth import Forbidden, Principal, Role, new_token, require
from orchestrator.web.paging import After, AfterPriority, Limit, known_repo, paged, review_mark
from orchestrator.web.state import WebState, web_state
from orchestrator.widening import limits_in_force

router = APIRouter(prefix="/api", tags=["api"])
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMITTER))]
Reviewer = Annotated[Principal, Depends(require(Role.REVIEWER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
State = Annotated[WebState, Depends(web_state)]
TicketId = Annotated[int, Path(description="A ticket's id, as `fleet tickets` shows it.")]
RunId = Annotated[int, Path(description="A run's id (a ticket's runs list them).")]
AttemptId = Annotated[int, Path(description="An attempt's id (a run's attempts list them).")]
VerificationId = Annotated[int, Path(description="A verification's id (an attempt lists its verifications).")]
TokenId = Annotated[int, Path(description="A token's id, as `fleet token list` shows it.")]
RepoFilter = Annotated[str | None, Query(max_length=100, description="Only this repo's tickets.")]
AgentFilter = Annotated[str | None, Query(max_length=200, description="Only tickets with a run of this agent.")]
REVIEW_PAGE = 20  # tickets per page of /api/review, each with its candidates' figures (no diffs): about 2 KB each


class TicketIn(TicketSpec):
    """A ticket to queue; the same fields as `fleet submit`. agent_cmd, agent_args and agent_env need the admin role."""


class RepoIn(RepoSpec):
    """A repository to register; the same fields as `fleet repo add`. Its commands run on the workers: admins only.

    A field left out comes from the repository's `.fleet.toml`, then from its default."""


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback: str = Field(
        default="", max_length=50_000, description="What the next attempt should do differently (its prompt shows it)."
    )
    candidate: int | None = Field(default=None, ge=1, description="Which candidate, 1 the best; the best if not given.")


class TokenIn(TokenSpec):
    """A token to create; the same fields as `fleet token create`."""


def token_view(row: Any) -> dict[str, Any]:
    """A token's public facts; the hash and the secret are never part of any answer."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "created_by": row.created_by,
        "created_at": views._time(row.created_at),
        "last_used_at": views._time(row.last_used_at),
        "revoked_at": views._time(row.revoked_at),
    }


def may_change(principal: Principal, submitted_by: str) -> None:
    """Submitters cancel and retry their own tickets; admins anyone's."""
    if not principal.can(Role.ADMIN) and submitted_by != principal.name:
        raise Forbidden("only the ticket's submitter or an admin may do this")


def ticket_owner(state: WebState, ticket_id: int) -> str:
    with state.db.session() as s:
        return queries.get_ticket(s, ticket_id).submitted_by


# --- reads -----------------------------------------------------------------------------------------


@router.get("/me")
def me(principal: Viewer) -> dict[str, Any]:
    """The caller's token name and role."""
    return {"id": principal.token_id, "name": principal.name, "role": principal.role.value}


@router.get("/tickets")
def list_tickets(
    request: Request,
    response: Response,
    state: State,
    _: Viewer,
    status: Annotated[TicketStatus | None, Query(description="Only tickets in this status.")] = None,
    repo: RepoFilter = None,
    agent: AgentFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 200,
    before: Annotated[
        int | None, Query(ge=1, description="Only tickets older than this id: the last id of a page gives the next.")
    ] = None,
) -> list[dict[str, Any]]:
    """Tickets newest first, filtered by status, repo and agent, a page at a time; a Link header names the next."""
    with state.db.session() as s:
        rows = dashboard.find_tickets(s, status.value if status else None, repo, agent, limit + 1, before=before)
        found = [views.ticket_view(t) for t in rows]
    known_repo(state.db, repo, found)
    return paged(request, response, found, limit, {"before": "id"})


@router.get("/tickets/{ticket_id}")
def get_ticket(ticket_id: TicketId, state: State, _: Viewer) -> dict[str, Any]:
    """A ticket with its runs and attempts (what `fleet show --json` prints)."""
    with state.db.session() as s:
        return views.ticket_view(queries.load_ticket_tree(s, ticket_id), with_runs=True)


@router.get("/tickets/{ticket_id}/runs")
def ticket_runs(ticket_id: TicketId, state: State, _: Viewer) -> list[dict[str, Any]]:
    with state.db.session() as s:
        runs: list[dict[str, Any]] = views.ticket_view(queries.load_ticket_tree(s, ticket_id), with_runs=True)["runs"]
        return runs


@router.get("/tickets/{ticket_id}/events")
def ticket_events(
    request: Request,
    response: Response,
    ticket_id: TicketId,
    state: State,
    _: Viewer,
    limit: Limit = 200,
    after: After = None,
) -> list[dict[str, Any]]:
    """The ticket's history, oldest first: submitted, approved, rejected, cancelled..., a page at a time (a Link header
    names the next)."""
    with state.db.session() as s:
        queries.get_ticket(s, ticket_id)
        found = [
            {
                "id": e.id,
                "kind": e.kind,
                "message": e.message,
                "actor": e.actor,
                "attempt": e.attempt_id,
                "at": views._time(e.created_at),
            }
            for e in queries.ticket_events(s, ticket_id, limit + 1, after)
        ]
        return paged(request, response, found, limit, {"after": "id"})


@router.get("/runs/{run_id}")
def get_run(run_id: RunId, state: State, _: Viewer) -> dict[str, Any]:
    with state.db.session() as s:
        run = dashboard.get_run(s, run_id)
        return {
            "id": run.id,
            "ticket": run.ticket_id,
            "number": run.number,
            "agent": run.agent,
            "status": run.status,
            "attempt_limit": run.attempt_limit,
            "attempts": [views.attempt_view(a) for a in run.attempts],
        }


@router.get("/attempts/{attempt_id}")
def get_attempt(attempt_id: AttemptId, state: State, _: Viewer) -> dict[str, Any]:
    """An attempt with its prompt, transcript and diff, whole (each bounded by the limits a worker stores)."""
    with state.db.session() as s:
        attempt = queries.get_attempt(s, attempt_id)
        return views.attempt_view(attempt) | views.attempt_texts(attempt) | {"ticket": attempt.ticket_id}


@router.get("/verifications/{verification_id}")
def get_verification(verification_id: VerificationId, state: State, _: Viewer) -> dict[str, Any]:
    """A verdict with its reasons, test lists, feedback digest and test output."""
    with state.db.session() as s:
        v = dashboard.get_verification(s, verification_id)
        view = views.verification_view(v) or {}
        return view | {"id": v.id, "attempt": v.attempt_id, "feedback": v.feedback, "output": v.output}


@router.get("/review")
def review_queue(
    request: Request,
    response: Response,
    state: State,
    _: Viewer,
    repo: RepoFilter = None,
    agent: AgentFilter = None,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many tickets, in the queue's order.")] = (
        REVIEW_PAGE
    ),
    after: Annotated[
        int | None,
        Query(ge=1, description="Only tickets after this one in the queue: the last id of a page gives the next."),
    ] = None,
    priority: AfterPriority = None,
) -> list[dict[str, Any]]:
    """Tickets waiting for review, highest priority first, each with its verified candidates, best first, a page at a
    time (a Link header names the next).

    A candidate carries its figures, not its texts: its whole diff and transcript are at its diff_url and
    transcript_url (plain text), and with its prompt at /api/attempts/{id}.
    """
    found = reviews.review_queue(state.db, repo, agent, limit + 1, review_mark(after, priority), texts=False)
    known_repo(state.db, repo, found)
    for ticket in found:
        ticket["candidates"] = [candidate | texts_at(candidate["id"]) for candidate in ticket["candidates"]]
    return paged(request, response, found, limit, {"after": "id", "priority": "priority"})


def texts_at(attempt_id: int) -> dict[str, str]:
    """Where an attempt's whole diff and transcript are, as plain text (orchestrator/web/raw.py)."""
    return {"diff_url": f"/attempts/{attempt_id}/diff", "transcript_url": f"/attempts/{attempt_id}/transcript"}


@router.get("/merge")
def merge_queue(state: State, _: Viewer) -> dict[str, Any]:
    """The merge queue: live entries in landing order, each with what it is verified on top of and the tickets it
    overlaps, and the entries that left it lately (what `fleet merge status --json` prints)."""
    with state.db.session() as s:
        return merges.queue_view(s)


@router.get("/workers")
def list_workers(state: State, _: Viewer) -> list[dict[str, Any]]:
    return list(figures.fleet_status(state.db, None)["workers"])


@router.get("/stats")
def stats(state: State, _: Viewer) -> dict[str, Any]:
    """The Fleet page's figures: tickets, attempts, workers, queues, throughput, backlog, spend."""
    return figures.stats(state.db, state.dispatcher)


@router.get("/repos")
def list_repos(
    request: Request,
    response: Response,
    state: State,
    principal: Viewer,
    limit: Limit = 100,
    after: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Only repositories named after this (a page's last name)."),
    ] = None,
) -> list[dict[str, Any]]:
    """The repositories and their settings by name, a page at a time (a Link header names the next); a notification
    URL (a credential) only for an admin."""
    with state.db.session() as s:
        rows = queries.list_repos(s, limit + 1, after)
        found = [views.repo_view(r, principal.role.allows(Role.ADMIN)) for r in rows]
        return paged(request, response, found, limit, {"after": "name"})


@router.post("/repos", status_code=201)
def add_repo(body: RepoIn, state: State, _: Admin) -> dict[str, Any]:
    """Register a repository and how to test it (what `fleet repo add` does)."""
    try:
        return register_repo(state.db, body, state.agents, limits_in_force(state.settings))
    except FleetError as exc:  # a path that is not a git repository, a bad name: bad input
        raise HTTPException(400, str(exc)) from None


# --- actions ---------------------------------------------------------------------------------------


@router.post("/tickets", status_code=201)
def submit(ticket: TicketIn, state: State, principal: Submitter) -> dict[str, Any]:
    """Queue a ticket. A custom agent command, arguments or environment run on the workers: admins only."""
    if (ticket.agent_cmd or ticket.agent_args or ticket.agent_env) and not principal.can(Role.ADMIN):
        raise Forbidden("agent_cmd, agent_args and agent_env choose what runs on the workers; they need the admin role")
    try:
        [created] = submit_tickets(
            state.db,
            state.dispatcher,
            state.settings,
            [ticket],
            state.settings.home.resolve(),
            principal.name,
            check_commands=True,
        )
    except Unrunnable as exc:  # the same line `fleet submit` prints: an agent that could only fail
        raise HTTPException(422, str(exc)) from None
    except FleetError as exc:  # bad input (unknown repo or base ref, bad agent command), not a state conflict
        raise HTTPException(400, str(exc)) from None
    with state.db.session() as s:
        return views.ticket_view(queries.get_ticket(s, created.id))


@router.post("/tickets/{ticket_id}/cancel")
def cancel(ticket_id: TicketId, state: State, principal: Submitter) -> dict[str, Any]:
    may_change(principal, ticket_owner(state, ticket_id))
    reviews.cancel(state.db, ticket_id, principal.name)
    return {"id": ticket_id, "status": TicketStatus.CANCELLED.value}


@router.post("/tickets/{ticket_id}/retry")
def retry(ticket_id: TicketId, state: State, principal: Submitter) -> dict[str, Any]:
    may_change(principal, ticket_owner(state, ticket_id))
    attempts = reviews.retry(state.db, state.dispatcher, state.settings, ticket_id, principal.name)
    return {"id": ticket_id, "status": TicketStatus.QUEUED.value, "attempts": attempts}


@router.post("/tickets/{ticket_id}/approve")
def approve(
    ticket_id: TicketId,
    state: State,
    principal: Reviewer,
    candidate: Annotated[int | None, Query(ge=1, description="Which candidate, 1 the best (the default).")] = None,
) -> dict[str, Any]:
    """Land a verified diff (the best, or ?candidate=N) as branch fleet/ticket-N, as `fleet review approve` does."""
    return approval.approve(state.db, state.dispatcher, state.settings, ticket_id, principal.name, candidate).view()


@router.post("/tickets/{ticket_id}/reject")
def reject(ticket_id: TicketId, body: RejectIn, state: State, principal: Reviewer) -> dict[str, Any]:
    """Reject the best diff; with feedback the agent gets a new attempt with those words."""
    decision = reviews.reject(
        state.db, state.dispatcher, state.settings, ticket_id, principal.name, body.feedback, body.candidate
    )
    return decision.view()


# --- tokens ----------------------------------------------------------------------------------------


@router.get("/tokens")
def list_tokens(
    request: Request,
    response: Response,
    state: State,
    _: Admin,
    include_revoked: Annotated[bool, Query(description="Revoked tokens too.")] = False,
    limit: Limit = 200,
    after: After = None,
) -> list[dict[str, Any]]:
    """Tokens oldest first, a page at a time (a Link header names the next)."""
    with state.db.session() as s:
        found = [token_view(t) for t in tokens.list_tokens(s, include_revoked, limit + 1, after)]
        return paged(request, response, found, limit, {"after": "id"})


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, state: State, principal: Admin) -> dict[str, Any]:
    """A new token; its secret is in this answer only, never again."""
    token_id, token = new_token(state.db, Role(body.role), body.name, principal.name)
    with state.db.session() as s:
        return token_view(tokens.get_token(s, token_id)) | {"token": token}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: TokenId, state: State, _: Admin) -> dict[str, Any]:
    with state.db.session() as s:
        return token_view(tokens.revoke(s, token_id))


def openapi_route(request: Request, _: Viewer) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema


router.add_api_route("/openapi.json", openapi_route, methods=["GET"], include_in_schema=False)
