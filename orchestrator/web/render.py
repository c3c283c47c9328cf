"""Server-side rendering helpers: highlighted diffs, inline SVG bar charts, ages."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from db.models import utcnow
from orchestrator import steps
from orchestrator.text import for_terminal
from orchestrator.web.figures import Bucket

MAX_DIFF_CHARS = 400_000
MAX_TEXT_CHARS = 200_000


def diff_html(diff: str) -> Markup:
    """A diff as highlighted HTML (pygments escapes the text); very large diffs are cut with a note."""
    if not diff.strip():
        return Markup('<p class="muted">no changes</p>')
    note = ""
    if len(diff) > MAX_DIFF_CHARS:
        diff, note = diff[:MAX_DIFF_CHARS], f"(cut at {MAX_DIFF_CHARS} characters; the API has the whole diff)"
    html = highlight(diff, DiffLexer(), HtmlFormatter(cssclass="hl"))
    return Markup(html) + (Markup('<p class="muted">') + escape(note) + Markup("</p>") if note else "")


def tail(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """The end of a long text (transcripts keep their conclusion at the end)."""
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


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
