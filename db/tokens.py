"""API token rows: created, found by id, listed, revoked. Hashing and checking the secret live in the web layer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select

from db.models import ApiToken, utcnow
from db.queries import AlreadyExists, NotFound, Session

TOUCH_EVERY = timedelta(seconds=60)


def add_token(s: Session, name: str, role: str, secret_hash: str, created_by: str = "") -> ApiToken:
    if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AlreadyExists(f"a token named {name!r} exists already")
    token = ApiToken(name=name, role=role, secret_hash=secret_hash, created_by=created_by)
    s.add(token)
    s.flush()
    return token


def get_token(s: Session, token_id: int) -> ApiToken:
    token = s.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"unknown token {token_id}")
    return token


def find_active(s: Session, token_id: int) -> ApiToken | None:
    """The token with that id unless it is revoked."""
    token = s.get(ApiToken, token_id)
    return token if token is not None and token.revoked_at is None else None


def touch(s: Session, token: ApiToken) -> None:
    """Record use, at most once a minute so reads stay reads."""
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        token.last_used_at = now


def list_tokens(
    s: Session, include_revoked: bool = False, limit: int | None = None, after: int | None = None
) -> Sequence[ApiToken]:
    """Tokens oldest first; a page of `limit` after token `after` (a range of the primary key, never an offset)."""
    query = select(ApiToken).order_by(ApiToken.id).limit(limit)
    if after:
        query = query.where(ApiToken.id > after)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return s.scalars(query).all()


def revoke(s: Session, token_id: int) -> ApiToken:
    token = get_token(s, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def count_active(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))) or 0
