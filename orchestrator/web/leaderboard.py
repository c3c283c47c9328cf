"""The Evaluations page: a leaderboard per named evaluation, with a pass@k chart per agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from db import queries
from orchestrator.evalreport import build_report
from orchestrator.web.pages import State, Viewer, page

router = APIRouter(include_in_schema=False)


def pass_chart(row: dict[str, Any]) -> Markup:
    """Bars of pass@k for one agent (k = 1 ... n), full height 1.0; a <title> on each bar gives the value."""
    points = sorted(((int(k), v) for k, v in row["pass_at"].items()), key=lambda p: p[0])
    width, height, gap = 160, 48, 4
    bar = width / max(len(points), 1)
    label = f"pass@k of {row['agent']} ({row['model']})"
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 12}" width="{width}" height="{height + 12}" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for i, (k, value) in enumerate(points):
        x, h = i * bar, height * value
        parts.append(f"<g><title>{escape(f'pass@{k} = {value:.3f}')}</title>")
        parts.append(f'<rect class="bar-all" x="{x:.1f}" y="0" width="{bar - gap:.1f}" height="{height}"/>')
        parts.append(
            f'<rect class="bar-pass" x="{x:.1f}" y="{height - h:.1f}" width="{bar - gap:.1f}" height="{h:.1f}"/></g>'
        )
        parts.append(f'<text x="{x:.1f}" y="{height + 11}">@{k}</text>')
    parts.append(f'<line class="axis" x1="0" y1="{height}" x2="{width}" y2="{height}"/></svg>')
    return Markup("".join(parts))


def leaderboard_context(state: Any, name: str | None) -> dict[str, Any]:
    with state.db.session() as s:
        names = [e.name for e in queries.list_evaluations(s)]
        chosen = name or (names[0] if names else None)
        report = build_report(queries.get_evaluation(s, chosen)) if chosen else None
    if report is not None:
        report["agents"].sort(key=lambda r: (-r["pass_at"].get("1", 0.0), r["agent"]))
        for row in report["agents"]:
            row["chart"] = pass_chart(row)
    return {"names": names, "report": report}


@router.get("/evals")
def evals_page(request: Request, state: State, principal: Viewer) -> Response:
    return page(request, "evals.html", principal, **leaderboard_context(state, None))


@router.get("/evals/{name}")
def eval_page(name: str, request: Request, state: State, principal: Viewer) -> Response:
    return page(request, "evals.html", principal, **leaderboard_context(state, name))
