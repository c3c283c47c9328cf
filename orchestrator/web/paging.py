"""Pages of the API's lists: a bounded page, one row more read to know whether another follows, and a Link header
naming the next (its cursor is the last row's place, never an offset); a filter naming no repository is an error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, Response

from db import queries
from db.dashboard import ReviewMark
from db.engine import Database
from db.spectypes import MAX_PRIORITY

Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many; a Link header names the next page.")]
After = Annotated[
    int | None, Query(ge=1, description="Only those after this id: the last id of a page gives the next.")
]
AfterPriority = Annotated[
    int | None,
    Query(
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="The priority ticket `after` had when its page was read (a next-page link gives it): the place "
        "in the queue stays put if that ticket's priority changes.",
    ),
]


def paged(
    request: Request, response: Response, rows: list[dict[str, Any]], limit: int, cursor: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The first `limit` rows (one more was read to know whether another page follows); when one does, a Link header
    names it (rel="next"): this URL with its filters, each parameter of `cursor` set to that key of the page's last
    row."""
    if len(rows) > limit:
        last = rows[limit - 1]
        following = request.url.include_query_params(**{param: last[key] for param, key in cursor.items()})
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return rows[:limit]


def review_mark(after: int | None, priority: int | None) -> ReviewMark | None:
    """The place in the review order a page starts after: a ticket, and its priority when the page before was read."""
    if after is None:
        if priority is not None:
            raise HTTPException(422, "priority: give it with after (a next-page link gives both)")
        return None
    return ReviewMark(after, priority)


def known_repo(db: Database, repo: str | None, page: Sequence[object]) -> None:
    """An empty page of a list filtered by a repository nobody registered is that name's 404, with the closest
    registered name (db.errors.unknown_repo, as `fleet tickets --repo` says), not an empty list; only an empty page
    is asked about, so a page with rows costs nothing more."""
    if repo and not page:
        with db.session() as s:
            queries.get_repo(s, repo)
