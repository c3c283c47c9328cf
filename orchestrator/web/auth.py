"""Who is asking: API tokens (bearer or a session cookie the database holds), roles, and CSRF tokens for form posts."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db import tokens, websessions
from db.engine import Database
from orchestrator.web.state import WebState, web_state

TOKEN_PREFIX = "fleet"
SESSION_COOKIE = "fleet_session"
LOGIN_CSRF_COOKIE = "fleet_login_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SESSION_LIFETIME = timedelta(seconds=SESSION_SECONDS)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Role(str, Enum):
    """Ordered: each role may do everything the roles before it may."""

    VIEWER = "viewer"
    SUBMITTER = "submitter"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class NotAuthenticated(Exception):
    """No valid token or session came with the request."""


class Forbidden(Exception):
    """The caller's role does not allow this."""


@dataclass(frozen=True)
class Principal:
    """The caller: a token's id, name (the actor recorded in the database) and role; via is bearer or cookie."""

    token_id: int
    name: str
    role: Role
    via: str = "bearer"
    session: str = ""

    def can(self, needed: Role) -> bool:
        return self.role.allows(needed)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(db: Database, role: Role, name: str, created_by: str, secret: str = "") -> tuple[int, str]:
    """Store a new token and return (id, the full token); the token itself is never stored or shown again.

    secret: the token's secret part when the operator chose it (the first admin token, from a secret file)."""
    secret = secret or secrets.token_urlsafe(32)
    with db.session() as s:
        row = tokens.add_token(
            s, name or f"{role.value}-{secrets.token_hex(3)}", role.value, hash_secret(secret), created_by
        )
        token_id = row.id
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"


BOOTSTRAP_NAME = "bootstrap-admin"
CHOSEN_SECRET = re.compile(r"[A-Za-z0-9_-]{32,512}")


def bootstrap_token(db: Database, secret: str, created_by: str) -> tuple[int, str] | None:
    """The first admin token of a new deployment, or None when an active token exists (run it on every start).

    secret: chosen by the operator (read from a secret file), else made here and shown once."""
    if secret and not CHOSEN_SECRET.fullmatch(secret):
        raise ValueError("a token secret is 32 to 512 letters, digits, '-' or '_' (e.g. `openssl rand -hex 32`)")
    with db.session() as s:
        if tokens.count_active(s):
            return None
    return new_token(db, Role.ADMIN, BOOTSTRAP_NAME, created_by, secret)


def parse_token(token: str) -> tuple[int, str] | None:
    prefix, _, rest = token.strip().partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not _digits(token_id) or not secret or len(token_id) > 12:
        return None
    return int(token_id), secret


def _digits(text: str) -> bool:
    """True for ASCII digits only (str.isdigit() takes `²`, which int() refuses)."""
    return text.isascii() and text.isdigit()


def same(given: str, expected: str) -> bool:
    """The two strings are equal, compared in constant time; any text at all (compare_digest refuses non-ASCII
    str with an exception, where a forged cookie or header is only wrong)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def check_token(db: Database, token: str) -> Principal | None:
    """The principal for a full token, comparing the secret's hash in constant time."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    token_id, secret = parsed
    with db.session() as s:
        row = tokens.find_active(s, token_id)
        if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
            return None
        tokens.touch(s, row)
        return Principal(row.id, row.name, Role(row.role))


# --- sessions --------------------------------------------------------------------------------------

SESSION_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def make_session(state: WebState, principal: Principal, replacing: Request | None = None) -> str:
    """A cookie value: a new session's id and a random secret, whose sha256 the database keeps until logout.

    A session lasts SESSION_SECONDS at most; revoking the token ends every session made from it. The session of the
    cookie that the login request `replacing` came with ends: the browser drops it, and a copy must not outlive it.
    """
    cookie = replacing.cookies.get(SESSION_COOKIE, "") if replacing is not None else ""
    if cookie and (earlier := check_session(state, cookie)) is not None:
        end_session(state, earlier)
    secret = secrets.token_urlsafe(32)
    with state.db.session() as s:
        session_id = websessions.add_session(s, principal.token_id, hash_secret(secret), SESSION_LIFETIME).id
    return f"{session_id}.{secret}"


def check_session(state: WebState, cookie: str) -> Principal | None:
    session_id, _, secret = cookie.partition(".")
    if not _digits(session_id) or len(session_id) > 12 or not SESSION_SECRET.fullmatch(secret):
        return None
    with state.db.session() as s:
        session = websessions.find_live(s, int(session_id), SESSION_LIFETIME)
        if session is None or not same(session.secret_hash, hash_secret(secret)):
            return None
        row = tokens.find_active(s, session.token_id)
        if row is None:
            return None
        tokens.touch(s, row)
        return Principal(row.id, row.name, Role(row.role), via="cookie", session=cookie)


def end_session(state: WebState, principal: Principal) -> None:
    """Log this browser out on the server: a copy of its cookie is refused from now on; other logins stay."""
    session_id = principal.session.partition(".")[0]
    if _digits(session_id):
        with state.db.session() as s:
            websessions.end_session(s, int(session_id))


def csrf_token(state: WebState, principal: Principal) -> str:
    """The CSRF token bound to a session; bearer callers need none (a browser never sends their header)."""
    return _sign(state.session_key, "csrf." + principal.session)[:40] if principal.session else ""


def check_csrf(state: WebState, principal: Principal, presented: str) -> None:
    if principal.via == "cookie" and not same(presented or "", csrf_token(state, principal)):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")


# --- dependencies ----------------------------------------------------------------------------------

bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `fleet token create`.")


def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
) -> Principal:
    state = web_state(request)
    principal = None
    if credentials is not None:
        principal = check_token(state.db, credentials.credentials)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = check_session(state, cookie)
    if principal is None:
        raise NotAuthenticated("a valid API token is required")
    return principal


def signed_in(request: Request) -> Principal | None:
    """The session's principal, if any: error pages keep the navigation of whoever is logged in."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return check_session(web_state(request), cookie) if cookie else None


def require(role: Role) -> Callable[..., Principal]:
    """A dependency: the caller, if their role allows `role`; API posts by cookie must carry the CSRF header."""

    def dependency(request: Request, principal: Principal = Depends(authenticate)) -> Principal:  # noqa: B008
        if not principal.can(role):
            raise Forbidden(f"this needs the {role.value} role; your token has {principal.role.value}")
        if request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
            check_csrf(web_state(request), principal, request.headers.get(CSRF_HEADER, ""))
        return principal

    return dependency
