"""Server-side rendering helpers: transcripts' tails, inline SVG bar charts, ages."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from db.models import utcnow
from orchestrator import steps
from orchestrator.text import for_terminal
from orchestrator.web.figures import Bucket

MAX_TEXT_CHARS = 50_000  # of a transcript on a page or in its live stream: its last few hundred steps


def tail(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """The end of a long text (transcripts keep their conclusion at the end), saying how much it left out."""
    cut = f"[... {len(text) - limit:,} characters before these are not shown: the raw transcript has them ...]\n"
    return text if len(text) <= limit else cut + text[-limit:]


def readable(text: str) -> str:
    """The end of an agent's or a command's output, its JSON events as steps (orchestrator/steps.py), without the
    characters that drive a terminal (Jinja or textContent escapes the rest)."""
    return tail(for_terminal(steps.readable(text)))


def bar_chart(points: list[Bucket], label: str, slot: str, span: str) -> Markup:
    """Bars of verifications per slot, the passed part darker; a <title> on each bar tells the numbers."""
    width, height, gap = 240, 48, 2
    bar = width / max(len(points), 1)
    top = max((b.total for b in points), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 12}" width="{width}" height="{height + 12}" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for i, b in enumerate(points):
        x = i * bar
        total_h = height * b.total / top
        pass_h = height * b.passed / top
        tip = f"{b.start:%H:%M} +{slot}: {b.total} verifications run, {b.passed} passed"
        parts.append(f"<g><title>{escape(tip)}</title>")
        parts.append(
            f'<rect class="bar-all" x="{x:.1f}" y="{height - total_h:.1f}" width="{bar - gap:.1f}" '
            f'height="{total_h:.1f}"/>'
        )
        parts.append(
            f'<rect class="bar-pass" x="{x:.1f}" y="{height - pass_h:.1f}" width="{bar - gap:.1f}" '
            f'height="{pass_h:.1f}"/></g>'
        )
    parts.append(f'<line class="axis" x1="0" y1="{height}" x2="{width}" y2="{height}"/>')
    if points:
        parts.append(f'<text x="0" y="{height + 11}">{escape(span)}</text>')
        parts.append(f'<text x="{width}" y="{height + 11}" text-anchor="end">now</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def age(value: datetime | str | None) -> str:
    """'3m 12s' since value, for people."""
    if value is None:
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return duration((utcnow() - when).total_seconds())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
