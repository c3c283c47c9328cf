"""The queues' pages: tickets waiting for review, a page at a time, and the merge queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from db import queries
from orchestrator import merges
from orchestrator import review as reviews
from orchestrator.web import diffview
from orchestrator.web.pages import State, Viewer, page
from orchestrator.web.paging import AfterPriority, known_repo, review_mark

router = APIRouter(include_in_schema=False)
REVIEW_PAGE = 10  # tickets per page of the review list, each with one diff drawn (diffview.BRIEF)


@router.get("/review")
def review_page(
    request: Request,
    state: State,
    principal: Viewer,
    repo: Annotated[str, Query(max_length=100)] = "",
    agent: Annotated[str, Query(max_length=200)] = "",
    after: Annotated[int, Query(ge=0)] = 0,
    priority: AfterPriority = None,
) -> Response:
    """Tickets waiting for review a page at a time, as the tickets list pages: the next page starts after the
    last ticket of this one (and the priority it has now, so the place holds if it changes), and the filters go
    with it."""
    mark = review_mark(after or None, priority)
    found = reviews.review_queue(state.db, repo or None, agent or None, REVIEW_PAGE + 1, mark)
    known_repo(state.db, repo, found)
    with state.db.session() as s:
        repos = [r.name for r in queries.list_repos(s)]
    later = found[REVIEW_PAGE - 1] if len(found) > REVIEW_PAGE else None
    filters = {"repo": repo, "agent": agent, "after": str(after or "")}
    context: dict[str, Any] = {"queue": found[:REVIEW_PAGE], "later": later, "filters": filters, "repos": repos}
    return page(request, "review.html", principal, diff_limit=diffview.BRIEF, **context)


@router.get("/merge")
def merge_page(request: Request, state: State, principal: Viewer) -> Response:
    with state.db.session() as s:
        view = merges.queue_view(s, recent=20)
    return page(request, "merge.html", principal, **view)
