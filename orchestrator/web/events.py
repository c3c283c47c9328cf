"""Server-Sent Events: pages learn that a ticket changed without reloading, then fetch the new fragment."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Hashable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from db import dashboard
from orchestrator.web import render
from orchestrator.web.auth import Principal, Role, require
from orchestrator.web.state import WebState, web_state

router = APIRouter(prefix="/events", include_in_schema=False)
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
State = Annotated[WebState, Depends(web_state)]
KEEPALIVE_SECONDS = 15.0
FLEET_EVERY_SECONDS = 3.0
FLEET_AT_LEAST_SECONDS = 60.0
MAX_WATCHED = 500
MIN_SLEEP_SECONDS = 0.05


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Watch(Protocol):
    """One stream's view: the shared question it asks (a key, how to read it, and how often) and what it makes of
    the answer."""

    key: Hashable
    every: float  # seconds between two asks

    def read(self) -> Any: ...

    def answer(self, found: Any) -> list[str]: ...


class TicketWatch:
    """Emits a 'ticket' event whenever a ticket's status or any of its attempts changes, and a 'transcript' event
    with a running agent's output so far whenever it grew (the page sets it as text, never as HTML)."""

    def __init__(self, state: WebState, ticket_id: int) -> None:
        self.state, self.ticket_id = state, ticket_id
        self.key: Hashable = ("ticket", ticket_id)
        self.every = state.poll_seconds
        self.last: Any = None
        self.transcripts: dict[int, str] = {}

    def read(self) -> tuple[Any, dict[int, str]]:
        with self.state.db.session() as s:
            return dashboard.ticket_fingerprint(s, self.ticket_id), dashboard.running_transcripts(s, self.ticket_id)

    def poll(self) -> list[str]:
        return self.answer(self.read())

    def answer(self, found: tuple[Any, dict[int, str]]) -> list[str]:
        now, running = found
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
        self.key: Hashable = ("list", tuple(ticket_ids))
        self.every = state.poll_seconds
        self.last: dict[int, tuple[str, str]] = {}

    def read(self) -> tuple[dict[int, tuple[str, str]], int]:
        with self.state.db.session() as s:
            return dashboard.ticket_statuses(s, self.ids), dashboard.newest_ticket_id(s)

    def answer(self, found: tuple[dict[int, tuple[str, str]], int]) -> list[str]:
        now, newest = found
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
    """A 'fleet' event when the fleet's figures changed (tickets or attempts moved, a verdict, a worker came or
    went), at most every few seconds and at least every minute (the page's ages and elapsed times grow). Asked
    no more often than it may answer: its fingerprint counts every ticket by status."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.key: Hashable = ("fleet",)
        self.every = max(state.poll_seconds, FLEET_EVERY_SECONDS)
        self.last: Any = None
        self.next, self.stale = 0.0, 0.0

    def read(self) -> Any:
        with self.state.db.session() as s:
            return dashboard.fleet_fingerprint(s)

    def answer(self, found: Any) -> list[str]:
        now = time.monotonic()
        if now < self.next or (found == self.last and now < self.stale):
            return []
        self.last, self.next, self.stale = found, now + FLEET_EVERY_SECONDS, now + FLEET_AT_LEAST_SECONDS
        return [sse("fleet", {"at": time.time()})]


class ReviewWatch:
    """A 'review' event with the number of tickets waiting for review, at first and whenever it changes."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.key: Hashable = ("review",)
        self.every = state.poll_seconds
        self.last: int | None = None

    def read(self) -> int:
        with self.state.db.session() as s:
            return dashboard.review_backlog(s)[0]

    def answer(self, count: int) -> list[str]:
        if count == self.last:
            return []
        self.last = count
        return [sse("review", {"count": count})]


async def stream(request: Request, state: WebState, watch: Watch) -> AsyncIterator[str]:
    """Ask every watch.every seconds for sse_seconds, then end (EventSource reconnects by itself).

    The database answers each question once per interval for every stream asking it, in one worker thread
    (state.answers)."""
    yield "retry: 1000\n\n"
    ends, keepalive = time.monotonic() + state.sse_seconds, time.monotonic() + KEEPALIVE_SECONDS
    while time.monotonic() < ends:
        found = await state.answers.ask(watch.key, watch.read, watch.every)
        for message in watch.answer(found):
            yield message
        if time.monotonic() > keepalive:
            keepalive = time.monotonic() + KEEPALIVE_SECONDS
            yield ": keepalive\n\n"
        if await request.is_disconnected():
            return
        # Until the shared answer goes stale: every stream of a question then asks just after the same read.
        until_stale = max(MIN_SLEEP_SECONDS, watch.every - state.answers.age(watch.key))
        await asyncio.sleep(min(until_stale, max(0.0, ends - time.monotonic())))


def respond(request: Request, state: WebState, watch: Watch) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(request, state, watch), media_type="text/event-stream", headers=headers)


@router.get("/tickets/{ticket_id}")
def ticket_events(ticket_id: int, request: Request, state: State, _: Viewer) -> StreamingResponse:
    watch = TicketWatch(state, ticket_id)
    watch.read()  # an unknown ticket is a 404 now, not a broken stream later
    return respond(request, state, watch)


@router.get("/tickets")
def list_events(
    request: Request,
    state: State,
    _: Viewer,
    ids: Annotated[str, Query(max_length=10_000, pattern=r"^[0-9,]*$")] = "",
    newest: int = 0,
) -> StreamingResponse:
    ticket_ids = [int(i) for i in ids.split(",") if i][:MAX_WATCHED]
    return respond(request, state, ListWatch(state, ticket_ids, newest))


@router.get("/fleet")
def fleet_events(request: Request, state: State, _: Viewer) -> StreamingResponse:
    return respond(request, state, FleetWatch(state))


@router.get("/review")
def review_events(request: Request, state: State, _: Viewer) -> StreamingResponse:
    """The navigation's badge: how many tickets wait for review, live on every page."""
    return respond(request, state, ReviewWatch(state))
