"""A diff as a code review tool shows it: a file list, line numbers, syntax highlighting, unified and split tables.

Diff text, file names and code come from agents: every piece is escaped (pygments escapes what it highlights,
markupsafe the rest), its invisible characters are written out, and nothing of it is ever run. Only the
lexers of common languages highlight, a hunk of short lines at a time, for at most a fraction of a second per
diff: some of pygments' lexers take seconds on a line of a few kilobytes (Easytrieve's time grows with the cube
of a line of tabs, Java's with the square of a line of words: 0.1 s for 400 characters), and every page of the
server would wait. The rest is shown as escaped plain text. The line-comment buttons
carry the file and the line of the new version in data attributes; static/review.js turns a click into a comment
field of the Reject form.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

from system.invisible import controls_shown, invisible_shown

MAX_HIGHLIGHTED_LINE = 200  # a hunk side with a longer line is shown plain
MAX_HIGHLIGHTED_HUNK = 10_000  # characters of one hunk side highlighted at once
MAX_HIGHLIGHT_SECONDS = 0.25  # of CPU, one diff's; past it, plain
HIGHLIGHTED = frozenset(
    {"python", "javascript", "typescript", "tsx", "jsx", "json", "yaml", "toml", "ini", "go", "rust", "c", "cpp"}
    | {"kotlin", "ruby", "bash", "html", "css", "markdown", "restructuredtext", "csharp", "swift", "scala"}
    | {"php"}  # not java: its lexer's time grows with the square of a line
)  # lexers by their first alias: common languages whose lexers read a line in time that grows with its length
FILE_START = re.compile(r"^diff --git ", re.M)  # at the start of a line git ends with a newline, as parse reads it
# A file's header lines that say what its lines do not: a rename or copy (a dormant file moved to where it runs shows
# no line), a new or deleted file, a new mode; and what a mode means.
HEADER_FACTS = (
    ("rename from ", "renamed from {}"),
    ("copy from ", "copied from {}"),
    ("new file mode ", "new file"),
    ("deleted file mode ", "deleted"),
    ("new mode ", "mode now {}"),
)
MODES = {
    "100755": " (executable)",
    "120000": " (a symbolic link: its one line is where it points)",
    "160000": " (a submodule)",
}
BINARY = re.compile(r"^(?:GIT binary patch|Binary files .* differ)$", re.M)  # git's two ways to say so
HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")
FORMATTER = HtmlFormatter(nowrap=True)
BINARY_NOTE = Markup(
    '<span class="diff-binary">binary, not drawn: git found a NUL byte in it; a text file holding one may still run'
    " (a pytest.ini, a script): read the raw diff</span>"
)


@dataclass(frozen=True)
class Limit:
    """How much of a diff one view draws. Files are drawn whole, in order, while the view's lines and characters
    last; a file over its own limit is listed, not drawn, so one generated file cannot crowd out the rest."""

    lines: int
    chars: int
    file_lines: int
    file_chars: int


# A drawn line is two table rows (unified and split) of about 350 bytes of markup besides its escaped, highlighted
# text, which takes up to 8 bytes a character (`&lt;` twice): PAGE keeps a ticket page's one diff under about
# 2 MB at worst and 0.5 MB for ordinary code, BRIEF each entry of a review page (REVIEW_PAGE of them) under 0.5 MB.
PAGE = Limit(lines=2_000, chars=200_000, file_lines=1_000, file_chars=100_000)
BRIEF = Limit(lines=500, chars=50_000, file_lines=500, file_chars=50_000)
MAX_LISTED_FILES = 300  # files named in a view's list; the rest are counted


@dataclass
class Line:
    kind: str  # " " context, "+" added, "-" removed
    old: int | None
    new: int | None
    text: str
    html: Markup = Markup("")


@dataclass
class FileDiff:
    path: str
    hunks: list[tuple[str, list[Line]]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # what its header says besides lines: renamed, new, a link

    @property
    def added(self) -> int:
        return sum(line.kind == "+" for _, lines in self.hunks for line in lines)

    @property
    def removed(self) -> int:
        return sum(line.kind == "-" for _, lines in self.hunks for line in lines)


def parse(diff: str) -> list[FileDiff]:
    """The files of a unified git diff, each with its hunks of numbered lines."""
    files: list[FileDiff] = []
    old = new = 0
    for raw in _lines(controls_shown(invisible_shown(diff))):
        if raw.startswith("diff --git "):
            files.append(FileDiff(raw.split(" b/", 1)[-1] if " b/" in raw else raw[11:]))
        elif not files:
            continue
        elif match := HUNK.match(raw):
            old, new = int(match[1]), int(match[2])
            files[-1].hunks.append((raw, []))
        elif not files[-1].hunks:  # the file's header: only here is `+++ b/name` a name, not an added `++ line`
            if raw.startswith("+++ b/"):
                files[-1].path = raw[6:]
            elif fact := _fact(raw):
                files[-1].facts.append(fact)
        elif raw[:1] in (" ", "+", "-", ""):
            kind = raw[:1] or " "
            line = Line(kind, old if kind != "+" else None, new if kind != "-" else None, raw[1:])
            old, new = old + (kind != "+"), new + (kind != "-")
            files[-1].hunks[-1][1].append(line)
    return files


def _fact(header_line: str) -> str | None:
    """What a line of a file's header says a reviewer must know (the lines alone hide it), or None."""
    for start, fact in HEADER_FACTS:
        if header_line.startswith(start):
            value = header_line[len(start) :]
            return fact.format(value) + MODES.get(value, "")
    return None


def _lines(diff: str) -> list[str]:
    """The diff's lines as git writes them: ended by a newline only (str.splitlines also breaks at a form feed or
    a lone carriage return, where an added line could start a file of its own and hide the lines after it)."""
    return [line.removesuffix("\r") for line in diff.removesuffix("\n").split("\n")]


def _lexer(path: str) -> Lexer | None:
    """The file's lexer when it is one of HIGHLIGHTED, else None (plain text)."""
    try:
        lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=True)
    except ClassNotFound:
        return None
    return lexer if lexer.aliases and lexer.aliases[0] in HIGHLIGHTED else None


class _Budget:
    """The CPU time one diff's lexers may spend on its lines: the thread's own time inside highlight(), so that
    neither a loaded machine nor finding a lexer the first time (pygments reads its plugins and compiles the
    lexer's patterns) turns a small diff plain, while a lexer that takes seconds on hostile text is stopped."""

    def __init__(self) -> None:
        self.spent = 0.0

    def allows(self, lines: list[Line]) -> bool:
        """True when lines may be highlighted: time is left, and they are few and short enough."""
        if self.spent > MAX_HIGHLIGHT_SECONDS or any(len(line.text) > MAX_HIGHLIGHTED_LINE for line in lines):
            return False
        return sum(len(line.text) + 1 for line in lines) <= MAX_HIGHLIGHTED_HUNK

    def highlight(self, text: str, lexer: Lexer) -> str:
        started = time.thread_time()
        try:
            return highlight(text, lexer, FORMATTER)
        finally:
            self.spent += time.thread_time() - started


def _highlight(lines: list[Line], lexer: Lexer | None, budget: _Budget) -> None:
    """Highlight one side of a hunk as a whole (a docstring spans lines); the formatter closes spans per line.
    Without a lexer or past the budget, each line is escaped plain text."""
    if lexer is None or not budget.allows(lines):
        for line in lines:
            line.html = Markup.escape(line.text)
        return
    html = budget.highlight("\n".join(line.text for line in lines) + "\n", lexer).split("\n")[:-1]
    if len(html) != len(lines):  # the lexer broke or joined lines: plain text, never one line shown as another
        html = [Markup.escape(line.text) for line in lines]
    for line, part in zip(lines, html, strict=True):
        line.html = Markup(part)


def _highlight_file(f: FileDiff, budget: _Budget) -> None:
    lexer = _lexer(f.path)
    for _, lines in f.hunks:
        _highlight([x for x in lines if x.kind != "+"], lexer, budget)
        _highlight([x for x in lines if x.kind != "-"], lexer, budget)  # context lines as the new version reads


def _num(line: Line | None, side: str, path: str) -> Markup:
    """A line number; on the new side a button that comments on that line (path is "" where no form takes them)."""
    number = None if line is None else (line.old if side == "old" else line.new)
    if number is None:
        return Markup('<td class="num"></td>')
    if side == "new" and path:
        button = Markup('<button type="button" class="line-comment" data-path="{}" data-line="{}">{}</button>')
        return Markup('<td class="num">{}</td>').format(button.format(path, number, number))
    return Markup('<td class="num">{}</td>').format(number)


def _code(line: Line | None) -> Markup:
    if line is None:
        return Markup('<td class="code empty"></td>')
    cls = {"+": "gi", "-": "gd", " ": "ctx"}[line.kind]
    return Markup('<td class="code {}"><span class="sign">{}</span>{}</td>').format(cls, line.kind, line.html)


def _unified(f: FileDiff, path: str) -> Markup:
    rows = []
    for header, lines in f.hunks:
        rows.append(Markup('<tr class="hunk"><td colspan="3">{}</td></tr>').format(header))
        for x in lines:
            rows.append(Markup("<tr>{}{}{}</tr>").format(_num(x, "old", path), _num(x, "new", path), _code(x)))
    cols = Markup('<colgroup><col class="num"><col class="num"><col></colgroup>')
    return Markup('<table class="diff-table unified">{}{}</table>').format(cols, Markup("").join(rows))


def _pairs(lines: list[Line]) -> list[tuple[Line | None, Line | None]]:
    """Side by side: context on both sides, each run of removed lines next to the added lines that follow it."""
    pairs: list[tuple[Line | None, Line | None]] = []
    removed: list[Line] = []
    added: list[Line] = []
    for x in [*lines, Line(" ", None, None, "")]:
        if x.kind == "-" and not added:
            removed.append(x)
        elif x.kind in "+-":
            (added if x.kind == "+" else removed).append(x)
        else:
            pairs.extend(zip_longest(removed, added))
            removed, added = [], []
            if x.old is not None:
                pairs.append((x, x))
    return pairs


def _split(f: FileDiff, path: str) -> Markup:
    rows = []
    for header, lines in f.hunks:
        rows.append(Markup('<tr class="hunk"><td colspan="4">{}</td></tr>').format(header))
        for left, right in _pairs(lines):
            left_cells = _num(left, "old", path) + _code(left)
            rows.append(Markup("<tr>{}{}</tr>").format(left_cells, _num(right, "new", path) + _code(right)))
    cols = Markup('<colgroup><col class="num"><col><col class="num"><col></colgroup>')
    return Markup('<table class="diff-table split">{}{}</table>').format(cols, Markup("").join(rows))


@dataclass
class Part:
    """One file's text of a diff, named and measured without parsing its lines."""

    text: str
    path: str
    added: int
    removed: int
    lines: int
    binary: bool  # git wrote its change as a binary patch (the file holds a NUL byte): no lines to draw
    facts: tuple[str, ...]


def split_files(diff: str) -> list[Part]:
    """The diff's files, cut where parse starts a file (text before the first is not a file's, as in parse); only
    the listed ones are named."""
    starts = [m.start() for m in FILE_START.finditer(diff)]
    ends = [*starts[1:], len(diff)]
    return [_part(diff[a:b], i < MAX_LISTED_FILES) for i, (a, b) in enumerate(zip(starts, ends, strict=True))]


def _part(text: str, named: bool) -> Part:
    header, mark, body = text.partition("\n@@")
    head = parse(header[:20_000])[0] if named else FileDiff("")  # a header's facts are in its first lines
    body = mark + body
    lines = text.count("\n") + (text[-1:] != "\n")
    binary = BINARY.search(header) is not None
    return Part(text, head.path, body.count("\n+"), body.count("\n-"), lines, binary, tuple(head.facts))


def _drawn(parts: list[Part], limit: Limit) -> list[bool]:
    """Which parts the view draws: each listed one that fits its file limit and what is left of the view's."""
    lines = chars = 0
    drawn = []
    for i, part in enumerate(parts):
        fits = i < MAX_LISTED_FILES and part.lines <= limit.file_lines and len(part.text) <= limit.file_chars
        fits = fits and lines + part.lines <= limit.lines and chars + len(part.text) <= limit.chars
        lines, chars = (lines + part.lines, chars + len(part.text)) if fits else (lines, chars)
        drawn.append(fits)
    return drawn


def _counts(added: int, removed: int) -> Markup:
    return Markup('<span class="add">+{}</span> <span class="del">-{}</span>').format(added, removed)


def _section(f: FileDiff, anchor: str, counts: Markup, form: str, budget: _Budget) -> Markup:
    _highlight_file(f, budget)
    path = f.path if form else ""
    return Markup('<section class="diff-file" id="{}"><h4>{} {}{}</h4>{}{}</section>').format(
        anchor, f.path, counts, _facts(f.facts), _unified(f, path), _split(f, path)
    )


def _facts(facts: Sequence[str]) -> Markup:
    return Markup(' <span class="diff-facts">{}</span>').format("; ".join(facts)) if facts else Markup("")


def _left_out(parts: list[Part], drawn: list[bool], limit: Limit, raw: str) -> Markup:
    """What the view did not draw, in numbers, and where the whole diff is; nothing when it drew it all."""
    missing = [p for p, shown in zip(parts, drawn, strict=True) if not shown]
    if not missing:
        return Markup("")
    lines = sum(p.lines for p in missing)
    text = (
        f"Not drawn: {len(missing):,} of {len(parts):,} files ({lines:,} of {sum(p.lines for p in parts):,} lines)."
        f" This view draws {_limits(limit)}."
    )
    link = Markup(' <a class="raw-diff" href="{}">The whole diff, as text</a>').format(raw) if raw else ""
    return Markup('<p class="diff-cut" role="note">{}{}</p>').format(text, link)


def _limits(limit: Limit) -> str:
    """The limit in words; once only when a file may take the whole view."""
    in_all = f"{limit.lines:,} lines and {limit.chars:,} characters in all"
    if (limit.file_lines, limit.file_chars) == (limit.lines, limit.chars):
        return f"up to {in_all}"
    return f"files of up to {limit.file_lines:,} lines and {limit.file_chars:,} characters, {in_all}"


def diff_view(diff: str, key: str, form: str = "", raw: str = "", limit: Limit = PAGE) -> Markup:
    """The review view of one diff, at most `limit` of it drawn; key makes its anchors unique on the page, form
    names the Reject form that line comments join (none: no comment buttons do anything), raw is the address of
    the whole diff as text (linked from the view, and from its note of what it left out)."""
    if not diff.strip():
        return Markup('<p class="muted">no changes</p>')
    parts, budget = split_files(diff), _Budget()
    drawn = _drawn(parts, limit)
    items: list[Markup] = []
    sections: list[Markup] = []
    for i, (part, shown) in enumerate(zip(parts[:MAX_LISTED_FILES], drawn, strict=False)):
        anchor, counts = f"{key}-f{i}", _counts(part.added, part.removed)
        facts = _facts(part.facts)
        if part.binary:
            items.append(Markup('<li class="not-drawn">{}{} {}</li>').format(part.path, facts, BINARY_NOTE))
            continue
        if not shown:
            note = Markup('<span class="muted">not drawn: {} lines</span>').format(f"{part.lines:,}")
            items.append(Markup('<li class="not-drawn">{} {}{} {}</li>').format(part.path, counts, facts, note))
            continue
        items.append(Markup('<li><a href="#{}">{}</a> {}{}</li>').format(anchor, part.path, counts, facts))
        sections.extend(_section(f, anchor, counts, form, budget) for f in parse(part.text))
    if (unlisted := len(parts) - MAX_LISTED_FILES) > 0:
        items.append(Markup('<li class="not-drawn muted">and {} more files</li>').format(f"{unlisted:,}"))
    return Markup(
        '<div class="review-diff hl mode-unified" data-form="{}">{}{}<ul class="diff-files">{}</ul>{}</div>'
    ).format(
        form,
        _toolbar(form, raw),
        _left_out(parts, drawn, limit, raw),
        Markup("").join(items),
        Markup("").join(sections),
    )


def _toolbar(form: str, raw: str) -> Markup:
    hint = '<span class="muted">click a line number of the new version to comment on that line</span>'
    link = Markup('<a class="raw-diff" href="{}">Raw diff</a>').format(raw) if raw else ""
    return Markup(
        '<div class="diff-toolbar"><button type="button" class="diff-mode" data-mode="unified">Unified</button>'
        '<button type="button" class="diff-mode" data-mode="split">Split</button>{}{}</div>'
    ).format(link, Markup(hint) if form else "")
