"""The API's front door: `/api`, an index of every endpoint, and `/api/docs`, Swagger UI served from this app."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from orchestrator.web.auth import CSRF_HEADER, Principal, Role, csrf_token, require
from orchestrator.web.state import web_state

router = APIRouter(include_in_schema=False)
DOCS = "/api/docs"
OPENAPI = "/api/openapi.json"
SWAGGER = "/static/swagger-ui"


def endpoints(request: Request) -> list[dict[str, Any]]:
    """Every documented route, read from the OpenAPI document: method, path, and what it does in one line."""
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    return [
        {"method": method.upper(), "path": path, "summary": (op.get("description") or op["summary"]).splitlines()[0]}
        for path, ops in paths.items()
        for method, op in ops.items()
    ]


@router.get("/api")
def api_index(request: Request) -> dict[str, Any]:
    """Answers without a token: where the docs are, how to authenticate, and every endpoint."""
    return {
        "name": request.app.title,
        "version": request.app.version,
        "docs": DOCS,
        "openapi": OPENAPI,
        "authentication": "Authorization: Bearer <token>, a token from `fleet token create --role ROLE`; "
        f"a browser session works too, with the {CSRF_HEADER} header on changes",
        "endpoints": endpoints(request),
    }


@router.get(DOCS)
def api_docs(request: Request, principal: Annotated[Principal, Depends(require(Role.VIEWER))]) -> HTMLResponse:
    """Swagger UI from the vendored assets (no CDN); it reads the OpenAPI document with the caller's session.

    Not FastAPI's get_swagger_ui_html: that page starts Swagger with an inline script, which the CSP forbids.
    """
    csrf = csrf_token(web_state(request), principal)
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Fleet API</title>"
        f'<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css"></head><body>'
        f'<div id="swagger-ui" data-openapi="{OPENAPI}" data-csrf="{escape(csrf)}"></div>'
        f'<script src="{SWAGGER}/swagger-ui-bundle.js"></script><script src="/static/swagger-init.js"></script>'
        "</body></html>"
    )
