"""Stored text reaches the terminal without the control sequences that would drive it, and with its visible text.

A ticket's title and model come from any submitter, a transcript and a diff from the agent: through the real
command line, no command prints an ESC, a BEL or a C1 control.
"""

from __future__ import annotations

import shlex

import pytest

from fleet.cli.cells import columns, for_terminal
from fleet.cli.web import watch_view
from tests.core.conftest import Fleet, scripted

ADD = "tests/test_calc.py::test_add"
TITLE = "\x1b]0;pwned\x07Fix \x1b[31madd\x1b[0m now\x9b2J"
SHOWN_TITLE = "Fix add now"
MODEL = "model-\x1b[8mhidden\x1b[28m-x"
# The agent prints colours, a window title and a hyperlink, and adds a file that holds escape sequences.
AGENT = (
    r"printf '\033[31mred text\033[0m \033]0;pwned\007done \033]8;;https://example.invalid\033\\link\033]8;;\033\\\n'; "
    r"printf 'note \033[2J\033[Hcleared\n' > notes.txt; exec " + scripted("fix-add")
)
CONTROLS = ("\x1b", "\x07", "\x9b", "\x9c", "\x9d")


def assert_clean(output: str, *visible: str) -> None:
    assert not [c for c in CONTROLS if c in output], repr(output)
    for text in visible:
        assert text in output, f"{text!r} not in {output!r}"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07title", "title"),  # OSC window title, BEL-terminated
        ("\x1b]8;;https://x.invalid\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ST-terminated
        ("\x1b[31mred\x1b[0m \x1b[2J\x1b[1;1H", "red "),  # CSI: colours, erase, cursor
        ("a\x9b31mb\x9d0;t\x9cc", "abc"),  # the 8-bit CSI, OSC and ST
        ("\x1b]0;unterminated\nnext", "\nnext"),  # an OSC never ended: up to the end of its line
        ("x\x1bcy\x1b(Bz\x1b", "xyz"),  # two-character escapes and a lone ESC
        ("tab\there\r\nline\rback\x00\x08\x7f", "tab\there\nlineback"),  # tab and newline stay
        ("Ünïcödé ✓ 日本 [bold]x[/bold]", "Ünïcödé ✓ 日本 [bold]x[/bold]"),
    ],
)
def test_for_terminal_drops_sequences_whole_and_keeps_the_text(raw: str, shown: str) -> None:
    assert for_terminal(raw) == shown


def test_the_live_view_shows_running_titles_clean() -> None:
    data = {
        "tickets": {"running": 1},
        "attempts": {"running": 1},
        "queues": {},
        "workers": [],
        "running": [
            {"attempt": 1, "ticket": 1, "title": TITLE, "agent": "shell", "status": "running", "elapsed_seconds": 3}
        ],
        "review_backlog": {"count": 0, "oldest_age_seconds": None},
        "last_hour": {"verifications": 0, "passed": 0},
        "spend_today_usd": 0.0,
    }
    assert_clean(watch_view(data), SHOWN_TITLE)


def test_columns_align_wide_characters_and_keep_each_row_on_one_line() -> None:
    rows = [(1, "日本語", "a\tb\nc"), (22, "\x1b[31mred\x1b[0m", "")]
    assert columns(("id", "title", "note"), rows, title="Tickets").splitlines() == [
        "Tickets",
        "id  title   note",
        "1   日本語  a b c",  # each wide character takes two columns; a tab or line break in a cell shows as a space
        "22  red",  # no trailing padding; the escape sequence is gone, not counted
    ]


def test_every_command_prints_stored_text_without_control_sequences(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "200"  # tables wide enough to show every cell whole
    fleet.sample_repo()
    command = f"sh -c {shlex.quote(AGENT)}"
    [ticket] = fleet.submit("--repo", "calc", "--title", TITLE, "--body", ADD, "--model", MODEL, "--agent-cmd", command)
    assert ticket["title"] == TITLE  # stored as given: only what is printed is cleaned
    fleet.up()
    tid = str(ticket["id"])
    [attempt] = [a["id"] for run in fleet.json("show", tid)["runs"] for a in run["attempts"]]

    assert_clean(fleet.run("tickets").stdout, SHOWN_TITLE)
    assert_clean(fleet.run("show", tid).stdout, f"ticket {tid} [needs_review] {SHOWN_TITLE}", "passed")
    assert_clean(fleet.run("review", "list").stdout, SHOWN_TITLE)
    # A diff's control characters are written out: the reviewer reads what the file holds, and nothing drives the
    # terminal.
    review = fleet.run("review", "show", tid).stdout
    assert_clean(review, SHOWN_TITLE, "+note <U+001B>[2J<U+001B>[Hcleared", "+    return a + b")
    assert_clean(fleet.run("logs", str(attempt)).stdout, SHOWN_TITLE, "red text done link\n", "edited calc.py")
    assert_clean(fleet.run("stats").stdout, "model-hidden-x")
    assert_clean(fleet.run("repo", "list").stdout, "calc")
    assert_clean(fleet.run("status").stdout, "tickets needs_review")
