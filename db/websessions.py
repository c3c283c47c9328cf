"""Web session rows: a login made, found while it lasts, ended by logging out; the web layer checks the secret."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from db.models import ApiToken, WebSession, utcnow
from db.queries import Session

SESSIONS_PER_TOKEN = 20  # a login past this ends the token's oldest session: logins cannot pile up rows


def add_session(s: Session, token_id: int, secret_hash: str, lifetime: timedelta) -> WebSession:
    """A new session of the token; sessions older than lifetime go at the same time (a login is rare, they are few),
    and so do the token's oldest beyond SESSIONS_PER_TOKEN, however often it logs in."""
    # The token's row first: two logins of one token at once take turns here, or each would keep the newest 19 it
    # sees and add one (21 on PostgreSQL's READ COMMITTED). SQLite's BEGIN IMMEDIATE already takes turns; it has no
    # FOR UPDATE, and SQLAlchemy leaves it out there.
    s.execute(select(ApiToken.id).where(ApiToken.id == token_id).with_for_update())
    s.execute(delete(WebSession).where(WebSession.created_at < utcnow() - lifetime))
    newest = select(WebSession.id).where(WebSession.token_id == token_id)
    newest = newest.order_by(WebSession.id.desc()).limit(SESSIONS_PER_TOKEN - 1)
    s.execute(delete(WebSession).where(WebSession.token_id == token_id, WebSession.id.not_in(newest)))
    row = WebSession(token_id=token_id, secret_hash=secret_hash)
    s.add(row)
    s.flush()
    return row


def find_live(s: Session, session_id: int, lifetime: timedelta) -> WebSession | None:
    """The session with that id, unless it ended or is older than lifetime."""
    row = s.get(WebSession, session_id)
    return row if row is not None and utcnow() - row.created_at <= lifetime else None


def end_session(s: Session, session_id: int) -> None:
    """Log that one session out; the token's other sessions stay."""
    s.execute(delete(WebSession).where(WebSession.id == session_id))
