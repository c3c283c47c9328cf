"""Server-rendered pages: Fleet, Tickets, Ticket, Review, Tokens, and the forms behind their buttons."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from db import dashboard, queries, tokens
from db.errors import NotFound
from db.lifecycle import TicketStatus
from db.specs import SpecError, TicketSpec, parse
from db.spectypes import MAX_BODY, TOKEN_NAME
from orchestrator import approval, views
from orchestrator import review as reviews
from orchestrator.errors import FleetError
from orchestrator.tickets import CANCELLABLE, submit
from orchestrator.web import diffview, figures, paging, render
from orchestrator.web.api import may_change, ticket_owner, token_view
from orchestrator.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Forbidden,
    Principal,
    Role,
    check_csrf,
    check_token,
    csrf_token,
    end_session,
    make_session,
    new_token,
    require,
    same,
)
from orchestrator.web.serving import is_loopback
from orchestrator.web.state import WebState, web_state

router = APIRouter(include_in_schema=False)
PAGE = 50  # tickets per page of the tickets list; older ones are a link away
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals.update(
    diff_view=diffview.diff_view,
    plural=views.plural,
    age=render.age,
    duration=render.duration,
    tail=render.tail,
    readable=render.readable,
)
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMITTER))]
Reviewer = Annotated[Principal, Depends(require(Role.REVIEWER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
State = Annotated[WebState, Depends(web_state)]
CsrfField = Annotated[str, Form(max_length=200)]
DONE = {
    "approved": "Approved: the diff landed as a branch.",
    "rejected": "Rejected.",
    "rejected_retry": "Rejected; a new attempt with your feedback is queued.",
    "cancelled": "Cancelled.",
    "retried": "Queued again.",
    "revoked": "Token revoked.",
    "submitted": "Ticket queued.",
}


class TicketForm(BaseModel):
    """The tickets page's form: text as a browser sends it, made into a TicketSpec by `spec`."""

    csrf: str = Field(default="", max_length=200)
    repo: str = Field(default="", max_length=200)
    title: str = Field(default="", max_length=1000)
    body: str = Field(default="", max_length=MAX_BODY)
    agent: str = Field(default="", max_length=1000)
    attempts: str = Field(default="", max_length=20)
    agent_cmd: str = Field(default="", max_length=5000)

    def spec(self) -> dict[str, Any]:
        """The fields given, typed as the spec wants them (a number that is not one stays text: its error says so)."""
        fields: dict[str, Any] = {"repo": self.repo, "title": self.title.strip(), "body": self.body}
        if self.attempts.strip():
            text = self.attempts.strip()
            fields["attempts"] = int(text) if text.isdigit() else text
        if self.agent.strip():
            fields["agents"] = self.agent.split()
        if self.agent_cmd.strip():
            fields["agent_cmd"] = self.agent_cmd.strip()
        return fields


def page(request: Request, name: str, principal: Principal | None, status_code: int = 200, **context: Any) -> Response:
    state = web_state(request)
    context |= {"me": principal, "csrf": csrf_token(state, principal) if principal else "", "Role": Role}
    context.setdefault("done", DONE.get(request.query_params.get("done", ""), ""))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def back(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={quote(done)}", status_code=303)


# --- login -----------------------------------------------------------------------------------------


def secure_cookies(request: Request) -> bool:
    """Secure everywhere but plain HTTP from this machine (HTTPS is a direct TLS listener or a trusted proxy's
    X-Forwarded-Proto, which uvicorn has already put into the request's scheme and client)."""
    client = request.client.host if request.client else ""
    return request.url.scheme == "https" or not is_loopback(client)


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    secure = secure_cookies(request)
    response.set_cookie(name, value, max_age=max_age, httponly=True, secure=secure, samesite="strict", path="/")


@router.get("/login")
def login_form(request: Request, error: str = "") -> Response:
    nonce = secrets.token_urlsafe(24)
    plain = request.url.scheme != "https" and secure_cookies(request)
    response = page(request, "login.html", None, login_csrf=nonce, error="plain" if plain else error)
    _cookie(request, response, LOGIN_CSRF_COOKIE, nonce, 3600)
    return response


@router.post("/login")
def login(
    request: Request,
    state: State,
    token: Annotated[str, Form(max_length=300)],
    csrf: CsrfField = "",
) -> Response:
    """Trade a token for a session cookie; the token itself is never stored in the browser."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not same(csrf, expected):
        return RedirectResponse("/login?error=expired", status_code=303)
    principal = check_token(state.db, token)
    if principal is None:
        return RedirectResponse("/login?error=bad", status_code=303)
    response = RedirectResponse("/", status_code=303)
    _cookie(request, response, SESSION_COOKIE, make_session(state, principal, request), SESSION_SECONDS)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, state: State, principal: Viewer, csrf: CsrfField = "") -> Response:
    check_csrf(state, principal, csrf)
    end_session(state, principal)
    response = RedirectResponse("/login", status_code=303)
    secure = secure_cookies(request)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    return response


# --- fleet -----------------------------------------------------------------------------------------


def fleet_context(state: WebState) -> dict[str, Any]:
    points = figures.series(state.db)
    return {
        "stats": figures.stats(state.db, state.dispatcher, points),
        "chart_hour": render.bar_chart(points["hour"], "verifications in the last hour", "5m", "-1h"),
        "chart_day": render.bar_chart(points["day"], "verifications in the last day", "1h", "-24h"),
    }


@router.get("/")
def fleet_page(request: Request, state: State, principal: Viewer) -> Response:
    return page(request, "fleet.html", principal, **fleet_context(state))


@router.get("/fragments/fleet")
def fleet_fragment(request: Request, state: State, principal: Viewer) -> Response:
    return page(request, "_fleet.html", principal, **fleet_context(state))


# --- tickets ---------------------------------------------------------------------------------------


def tickets_response(
    request: Request, state: WebState, principal: Principal, filters: dict[str, str], **extra: Any
) -> Response:
    statuses = [s.value for s in TicketStatus]
    status = filters["status"] if filters["status"] in statuses else None
    with state.db.session() as s:
        found = dashboard.find_tickets(
            s, status, filters["repo"] or None, filters["agent"] or None, PAGE + 1, True, int(filters["before"] or 0)
        )
        rows = [views.ticket_view(t, with_runs=True) for t in found[:PAGE]]
        repos = [r.name for r in queries.list_repos(s)]
    paging.known_repo(state.db, filters["repo"], rows)
    older = rows[-1]["id"] if len(found) > PAGE else None
    context = {"tickets": rows, "statuses": statuses, "repos": repos, "filters": filters, "form": {}, "older": older}
    context |= extra
    return page(request, "tickets.html", principal, status_code=422 if "form_error" in extra else 200, **context)


@router.get("/tickets")
def tickets_page(
    request: Request,
    state: State,
    principal: Viewer,
    status: Annotated[str, Query(max_length=20)] = "",
    repo: Annotated[str, Query(max_length=100)] = "",
    agent: Annotated[str, Query(max_length=200)] = "",
    before: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    filters = {"status": status, "repo": repo, "agent": agent, "before": str(before or "")}
    return tickets_response(request, state, principal, filters)


@router.post("/tickets")
def submit_form(
    request: Request,
    state: State,
    principal: Submitter,
    form: Annotated[TicketForm, Form()],
) -> Response:
    """The tickets page's form: the spec's one-line error on the same page, the ticket's page when queued."""
    check_csrf(state, principal, form.csrf)
    if form.agent_cmd and not principal.can(Role.ADMIN):
        raise Forbidden("an agent command chooses what runs on the workers; it needs the admin role")
    try:
        spec = parse(TicketSpec, form.spec())
        home = state.settings.home.resolve()
        [ticket] = submit(state.db, state.dispatcher, state.settings, [spec], home, principal.name, check_commands=True)
    except (SpecError, FleetError) as exc:
        empty = {"status": "", "repo": "", "agent": "", "before": ""}
        return tickets_response(request, state, principal, empty, form=form.model_dump(), form_error=str(exc))
    return back(f"/tickets/{ticket.id}", "submitted")


def ticket_context(state: WebState, ticket_id: int, chosen: int | None = None) -> dict[str, Any]:
    """The ticket page's facts; one attempt, `chosen` or else the best candidate or the latest, has its diff and
    transcript drawn, the others are a link away (a page with every attempt's 5 MB diff drawn never ends)."""
    with state.db.session() as s:
        tree = queries.load_ticket_tree(s, ticket_id)
        ticket = views.ticket_view(tree, with_runs=True)
        rejected = queries.rejected_attempt_ids(s, ticket_id)
        found = reviews.candidates(tree, rejected)
        shown = [reviews.candidate_view(c, rank) for rank, c in enumerate(found, start=1)]
        texts = {a.id: views.attempt_view(a) | views.attempt_texts(a) for run in tree.runs for a in run.attempts}
        submitted_by = tree.submitted_by
        approved = queries.approval(s, ticket_id)
        landed = views.landed(approved, tree.repo) if approved else None
        events = [(e.kind, e.message, e.actor, e.created_at) for e in queries.ticket_events(s, ticket_id)]
    for run in ticket["runs"]:
        for attempt in run["attempts"]:
            attempt.update(texts[attempt["id"]])
    focus = focus_attempt(ticket_id, list(texts), found[0].attempt.id if found else None, chosen)
    in_review = [c["id"] for c in shown] if ticket["status"] == "needs_review" else []
    return {
        "ticket": ticket,
        "candidates": shown,
        "rejected": rejected,
        "best_attempt": found[0].attempt.id if found else None,
        "chosen": chosen,
        "focus": focus,
        "in_review": in_review,
        "diff_limit": diffview.PAGE,
        "submitted_by": submitted_by,
        "landed": landed,
        "events": events,
        "cancellable": ticket["status"] in CANCELLABLE,
        "retryable": ticket["status"] in ("failed", "error", "cancelled"),
    }


def focus_attempt(ticket_id: int, attempts: list[int], best: int | None, chosen: int | None) -> int | None:
    """The attempt a reader asked for (one of the ticket's), else the one a reviewer most likely looks at."""
    if chosen is not None and chosen not in attempts:
        raise NotFound(f"attempt {chosen} is not an attempt of ticket {ticket_id}")
    return chosen or best or max(attempts, default=None)


Chosen = Annotated[int | None, Query(ge=1, description="The attempt whose diff and transcript are drawn.")]


@router.get("/tickets/{ticket_id}")
def ticket_page(ticket_id: int, request: Request, state: State, principal: Viewer, attempt: Chosen = None) -> Response:
    return page(request, "ticket.html", principal, **ticket_context(state, ticket_id, attempt))


@router.get("/tickets/{ticket_id}/live")
def ticket_fragment(
    ticket_id: int, request: Request, state: State, principal: Viewer, attempt: Chosen = None
) -> Response:
    return page(request, "_ticket_body.html", principal, **ticket_context(state, ticket_id, attempt))


@router.post("/tickets/{ticket_id}/cancel")
def cancel_form(ticket_id: int, state: State, principal: Submitter, csrf: CsrfField = "") -> Response:
    check_csrf(state, principal, csrf)
    may_change(principal, ticket_owner(state, ticket_id))
    reviews.cancel(state.db, ticket_id, principal.name)
    return back(f"/tickets/{ticket_id}", "cancelled")


@router.post("/tickets/{ticket_id}/retry")
def retry_form(ticket_id: int, state: State, principal: Submitter, csrf: CsrfField = "") -> Response:
    check_csrf(state, principal, csrf)
    may_change(principal, ticket_owner(state, ticket_id))
    reviews.retry(state.db, state.dispatcher, state.settings, ticket_id, principal.name)
    return back(f"/tickets/{ticket_id}", "retried")


AttemptField = Annotated[int | None, Form()]
Texts = Annotated[list[str], Form(max_length=5_000)]


def _choice(attempt: int | None) -> reviews.Choice:
    """Buttons name the attempt they were drawn for, so a ranking that changed since cannot swap the diff."""
    return None if attempt is None else ("attempt", attempt)


@router.post("/tickets/{ticket_id}/approve")
def approve_form(
    ticket_id: int, state: State, principal: Reviewer, csrf: CsrfField = "", attempt: AttemptField = None
) -> Response:
    check_csrf(state, principal, csrf)
    approval.approve(state.db, state.dispatcher, state.settings, ticket_id, principal.name, _choice(attempt))
    return back(f"/tickets/{ticket_id}", "approved")


@router.post("/tickets/{ticket_id}/reject")
def reject_form(
    ticket_id: int,
    state: State,
    principal: Reviewer,
    csrf: CsrfField = "",
    feedback: Annotated[str, Form(max_length=50_000)] = "",
    attempt: AttemptField = None,
    comment_path: Texts = [],  # noqa: B006 (FastAPI copies form defaults)
    comment_line: Annotated[list[int], Form()] = [],  # noqa: B006
    comment_text: Texts = [],  # noqa: B006
) -> Response:
    """Reject a candidate; the line comments of the diff view join the feedback as `calc.py:7: comment` lines."""
    check_csrf(state, principal, csrf)
    words = reviews.with_line_comments(feedback, list(zip(comment_path, comment_line, comment_text, strict=False)))
    decision = reviews.reject(
        state.db, state.dispatcher, state.settings, ticket_id, principal.name, words, _choice(attempt)
    )
    return back(f"/tickets/{ticket_id}", "rejected_retry" if decision.attempt else "rejected")


# --- tokens ----------------------------------------------------------------------------------------


def tokens_page_response(request: Request, state: WebState, principal: Principal, **extra: Any) -> Response:
    with state.db.session() as s:
        rows = [token_view(t) for t in tokens.list_tokens(s)]
    return page(request, "tokens.html", principal, tokens=rows, roles=[r.value for r in Role], **extra)


@router.get("/tokens")
def tokens_page(request: Request, state: State, principal: Admin) -> Response:
    return tokens_page_response(request, state, principal)


@router.post("/tokens")
def create_token_form(
    request: Request,
    state: State,
    principal: Admin,
    role: Annotated[Role, Form()],
    name: Annotated[str, Form(max_length=100, pattern=TOKEN_NAME)] = "",
    csrf: CsrfField = "",
) -> Response:
    """The new token is shown on this one answer only (not a redirect: nothing keeps it)."""
    check_csrf(state, principal, csrf)
    token_id, token = new_token(state.db, role, name, principal.name)
    response = tokens_page_response(request, state, principal, new_token=token, new_token_id=token_id)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/tokens/{token_id}/revoke")
def revoke_token_form(token_id: int, state: State, principal: Admin, csrf: CsrfField = "") -> Response:
    check_csrf(state, principal, csrf)
    with state.db.session() as s:
        tokens.revoke(s, token_id)
    return back("/tokens", "revoked")


@router.get("/healthz")
def healthz(state: State) -> HTMLResponse:
    """Answers without a token: 'ok' when the database answers, 503 when it does not."""
    try:
        with state.db.session() as s:
            dashboard.newest_ticket_id(s)
    except Exception:  # any database failure means not healthy; the details stay in the server's log
        return HTMLResponse("database unavailable", status_code=503, media_type="text/plain")
    return HTMLResponse("ok", media_type="text/plain")
