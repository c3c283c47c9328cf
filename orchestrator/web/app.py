"""The app factory: routers, error answers, body limit, security headers. Nothing is built at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import Database
from db.lifecycle import IllegalTransition
from db.migrate import upgrade
from db.queries import AlreadyExists, NotFound
from db.specs import explain_errors
from orchestrator.dispatch import DispatcherFactory, LazyDispatcher
from orchestrator.errors import FleetError, InvalidInput
from orchestrator.web import api, apidocs, events, hooks, leaderboard, metrics, pages, queues, raw
from orchestrator.web.auth import Forbidden, NotAuthenticated, signed_in
from orchestrator.web.state import WebState, load_session_key
from system.settings import Settings
from system.webhosts import served_names

STATIC = Path(__file__).parent / "static"
MACHINE_PREFIXES = ("/api/", "/metrics", "/events/")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            too_big = JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)
            return await too_big(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """CSP (no inline script, no other origin), no framing, no sniffing, no referrer; pages are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + SECURITY_HEADERS
                if not static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def refuse_nul(request: Request) -> None:
    """A NUL byte in the path or the query is a 400 naming it, before any route reads it: PostgreSQL's text takes
    none, so a filter or page cursor holding one (`?repo=%00`, `?after=%00`) was a 500."""
    if "\x00" in request.url.path or "%00" in request.url.query:
        raise HTTPException(400, "the request's URL holds a NUL byte (%00), which no name or filter holds")


def _machine(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES) or request.url.path == "/metrics"


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if _machine(request):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    principal = signed_in(request)
    return pages.page(request, "error.html", principal, status_code=status, status=status, message=message)


def add_error_handlers(app: FastAPI) -> None:
    async def not_authenticated(request: Request, exc: Exception) -> Response:
        if _machine(request) and request.url.path != apidocs.DOCS:
            return _error(request, 401, str(exc), {"WWW-Authenticate": "Bearer"})
        return RedirectResponse("/login", status_code=303)

    async def status_for(request: Request, exc: Exception) -> Response:
        status = {Forbidden: 403, NotFound: 404, AlreadyExists: 409, IllegalTransition: 409, FleetError: 409}
        status |= {InvalidInput: 422}  # a value out of bounds, as a request's field is
        return _error(request, status[type(exc)], str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return _error(request, 422, explain_errors(errors))

    async def out_of_range(request: Request, exc: Exception) -> Response:
        return _error(request, 400, "a number in the request is out of range")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(OverflowError, out_of_range)  # SQLite takes integers of 64 bits, a URL any
    for exc_type in (Forbidden, NotFound, AlreadyExists, IllegalTransition, FleetError, InvalidInput):
        app.add_exception_handler(exc_type, status_for)


def create_app(
    settings: Settings,
    workers: DispatcherFactory,
    *,
    sse_seconds: float = 300.0,
    poll_seconds: float = 1.0,
    max_body_bytes: int = 1_000_000,
    listened_on: str | None = None,
) -> FastAPI:
    """The dashboard and API for settings' database, reaching the workers through what workers(settings) builds.

    Migrates the database to the newest schema. Answers only to the Host names served_names gives for listened_on
    (the address `fleet web` listens on; unknown when another server serves the app) and FLEET_WEB_HOSTS.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    upgrade(db)
    app = FastAPI(
        title="Fleet",
        summary="Queue tickets for coding agents; review only verified diffs.",
        version="0.1.0",
        openapi_url=None,  # served at /api/openapi.json behind a token instead
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_nul)],
    )
    app.state.fleet = WebState(
        settings=settings,
        db=db,
        session_key=load_session_key(settings.home),
        dispatcher=LazyDispatcher(settings, workers),
        sse_seconds=sse_seconds,
        poll_seconds=poll_seconds,
        max_body_bytes=max_body_bytes,
    )
    for router in (
        apidocs.router,
        api.router,
        hooks.router,
        pages.router,
        queues.router,
        raw.router,
        leaderboard.router,
        events.router,
        metrics.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(SecurityHeaders)
    # Added last, so outermost: however the app is served (fleet web, uvicorn --factory, gunicorn), a name not served
    # is a 400 "Invalid host header" before any route or login (DNS rebinding).
    allowed = served_names(listened_on, settings.web_hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed), www_redirect=False)
    return app


def state_of(app: FastAPI) -> Any:
    return app.state.fleet
