"""An attempt's diff and transcript whole, as plain text: the pages draw only a bounded part of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from db import queries
from orchestrator.web.auth import Principal, Role, require
from orchestrator.web.state import WebState, web_state

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
State = Annotated[WebState, Depends(web_state)]


def plain(text: str, filename: str) -> PlainTextResponse:
    """Text a browser shows as text and saves under filename; the app's headers add nosniff to every answer, so
    an agent's diff that looks like HTML is never read as a page."""
    return PlainTextResponse(text, headers={"Content-Disposition": f'inline; filename="{filename}"'})


@router.get("/attempts/{attempt_id}/diff")
def attempt_diff(attempt_id: int, state: State, _: Viewer) -> PlainTextResponse:
    """The attempt's whole diff, as git wrote it."""
    with state.db.session() as s:
        return plain(queries.get_attempt(s, attempt_id).diff, f"attempt-{attempt_id}.diff")


@router.get("/attempts/{attempt_id}/transcript")
def attempt_transcript(attempt_id: int, state: State, _: Viewer) -> PlainTextResponse:
    """The attempt's whole transcript, as the agent printed it."""
    with state.db.session() as s:
        return plain(queries.get_attempt(s, attempt_id).transcript, f"attempt-{attempt_id}-transcript.txt")
