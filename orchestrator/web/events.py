"""Server-Sent Events: pages learn that a ticket changed without reloading, then fetch the new fragment."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from db import dashboard
from orchestrator.web import render
from orchestrator.web.auth import Principal, Role, require
from orchestrator.web.state import WebState, web_state

router = APIRouter(prefix="/events", include_in_schema=False)
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
State = Annotated[WebState, Depends(web_state)]
KEEPALIVE_SECONDS = 15.0
FLEET_EVERY_SECONDS = 3.0
MAX_WATCHED = 500


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class TicketWatch:
    """Emits a 'ticket' event whenever a ticket's status or any of its attempts changes, and a 'transcript' event
    with a running agent's output so far whenever it grew (the page sets it as text, never as HTML)."""

    def __init__(self, state: WebState, ticket_id: int) -> None:
        self.state, self.ticket_id = state, ticket_id
        self.last: Any = None
        self.transcripts: dict[int, str] = {}

    def poll(self) -> list[str]:
        with self.state.db.session() as s:
            now = dashboard.ticket_fingerprint(s, self.ticket_id)
            running = dashboard.running_transcripts(s, self.ticket_id)
        out = [
            sse("transcript", {"id": attempt_id, "text": render.readable(text)})
            for attempt_id, text in sorted(running.items())
            if self.transcripts.get(attempt_id) != text
        ]
        self.transcripts = running
        if now == self.last:
            return out
        self.last = now
        changed = {"id": self.ticket_id, "status": now[0], "reason": now[1], "attempts": len(now[2])}
        return [sse("ticket", changed), *out]


class ListWatch:
    """Emits a 'status' event per ticket whose status changed, and 'new' when newer tickets exist."""

    def __init__(self, state: WebState, ticket_ids: list[int], newest: int) -> None:
        self.state, self.ids, self.newest = state, ticket_ids, newest
        self.last: dict[int, tuple[str, str]] = {}

    def poll(self) -> list[str]:
        with self.state.db.session() as s:
            now = dashboard.ticket_statuses(s, self.ids)
            newest = dashboard.newest_ticket_id(s)
        out = [
            sse("status", {"id": tid, "status": status, "reason": reason})
            for tid, (status, reason) in sorted(now.items())
            if self.last.get(tid) != (status, reason)
        ]
        self.last = now
        if newest > self.newest:
            self.newest = newest
            out.append(sse("new", {"newest": newest}))
        return out


class FleetWatch:
    """A 'fleet' tick every few seconds: the page fetches its figures again."""

    def __init__(self) -> None:
        self.next = 0.0

    def poll(self) -> list[str]:
        if time.monotonic() < self.next:
            return []
        self.next = time.monotonic() + FLEET_EVERY_SECONDS
        return [sse("fleet", {"at": time.time()})]


class ReviewWatch:
    """A 'review' event with the number of tickets waiting for review, at first and whenever it changes."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.last: int | None = None

    def poll(self) -> list[str]:
        with self.state.db.session() as s:
            count, _ = dashboard.review_backlog(s)
        if count == self.last:
            return []
        self.last = count
        return [sse("review", {"count": count})]


async def stream(request: Request, state: WebState, poll: Callable[[], list[str]]) -> AsyncIterator[str]:
    """Poll the database every poll_seconds for sse_seconds, then end (EventSource reconnects by itself)."""
    yield "retry: 1000\n\n"
    ends, keepalive = time.monotonic() + state.sse_seconds, time.monotonic() + KEEPALIVE_SECONDS
    while time.monotonic() < ends:
        for message in await run_in_threadpool(poll):
            yield message
        if time.monotonic() > keepalive:
            keepalive = time.monotonic() + KEEPALIVE_SECONDS
            yield ": keepalive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(state.poll_seconds)


def respond(request: Request, state: WebState, poll: Callable[[], list[str]]) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(request, state, poll), media_type="text/event-stream", headers=headers)


@router.get("/tickets/{ticket_id}")
def ticket_events(ticket_id: int, request: Request, state: State, _: Viewer) -> StreamingResponse:
    watch = TicketWatch(state, ticket_id)
    watch.poll()  # an unknown ticket is a 404 now, not a broken stream later
    watch.last = None
    return respond(request, state, watch.poll)


@router.get("/tickets")
def list_events(
    request: Request,
    state: State,
    _: Viewer,
    ids: Annotated[str, Query(max_length=10_000, pattern=r"^[0-9,]*$")] = "",
    newest: int = 0,
) -> StreamingResponse:
    ticket_ids = [int(i) for i in ids.split(",") if i][:MAX_WATCHED]
    return respond(request, state, ListWatch(state, ticket_ids, newest).poll)


@router.get("/fleet")
def fleet_events(request: Request, state: State, _: Viewer) -> StreamingResponse:
    return respond(request, state, FleetWatch().poll)


@router.get("/review")
def review_events(request: Request, state: State, _: Viewer) -> StreamingResponse:
    """The navigation's badge: how many tickets wait for review, live on every page."""
    return respond(request, state, ReviewWatch(state).poll)
