"""Transcripts read as steps: each agent CLI's JSON events (as the real CLIs print them) become one line per step."""

from __future__ import annotations

import json

from fleet.cli.follow import _whole_lines
from orchestrator.steps import readable

EDIT = {"type": "tool_use", "name": "Edit", "input": {"file_path": "/w/calc.py", "old_string": "a - b"}}
RESULT = {"type": "tool_result", "content": "The file /w/calc.py has been updated."}
CHANGE = {"id": "i1", "type": "file_change", "changes": [{"path": "/w/calc.py", "kind": "update"}]}
COMMAND = {"id": "i2", "type": "command_execution", "command": "pytest -q", "exit_code": 0}
TOOL = {"tool": "edit", "state": {"input": {"filePath": "/w/calc.py"}, "output": "Edit applied."}}
CLAUDE = [
    {"type": "system", "subtype": "init", "cwd": "/w", "tools": ["Read", "Edit"]},
    {"type": "assistant", "message": {"content": [EDIT]}},
    {"type": "user", "message": {"content": [RESULT]}},
    {"type": "result", "subtype": "success", "is_error": False, "result": "Fixed add().", "total_cost_usd": 0.29},
]  # fmt: skip
CODEX = [
    {"type": "thread.started", "thread_id": "t"},
    {"type": "item.completed", "item": CHANGE},
    {"type": "item.completed", "item": COMMAND},
    {"type": "turn.completed", "usage": {"input_tokens": 20807, "output_tokens": 56}},
]  # fmt: skip
OPENCODE = [
    {"type": "tool_use", "part": TOOL},
    {"type": "error", "error": {"name": "APIError", "data": {"message": "Incorrect API key"}}},
]  # fmt: skip
GEMINI = [
    {"type": "tool_use", "tool_name": "replace", "tool_id": "r1", "parameters": {"file_path": "/w/calc.py"}},
    {"type": "tool_result", "tool_id": "r1", "status": "success"},
    {"type": "message", "role": "assistant", "content": "Fixed add().", "delta": True},
]  # fmt: skip


def _jsonl(events: list[dict[str, object]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_each_cli_s_events_read_as_steps() -> None:
    assert readable(_jsonl(CLAUDE)) == (
        "→ Edit file_path=/w/calc.py, old_string=a - b\n← The file /w/calc.py has been updated.\n"
        "[done: Fixed add().; cost $0.29]\n"
    )
    assert readable(_jsonl(CODEX)) == (
        "edited /w/calc.py\n$ pytest -q (exit 0)\n[turn.completed: input_tokens=20807, output_tokens=56]\n"
    )
    assert readable(_jsonl(OPENCODE)) == "→ edit filePath=/w/calc.py\n← Edit applied.\nerror: Incorrect API key\n"
    assert readable(_jsonl(GEMINI)) == "→ replace file_path=/w/calc.py\n← success\nassistant: Fixed add().\n"


def test_other_lines_stay_as_they_are() -> None:
    text = "Applied edit to calc.py\n{not json}\n[fleet] a note\n"
    assert readable(text) == text


def test_follow_renders_only_whole_lines() -> None:
    assert _whole_lines('{"type": "turn.started"}\n{"type": "ite') == ('{"type": "turn.started"}\n', '{"type": "ite')
    assert _whole_lines("no newline yet") == ("", "no newline yet")


def test_the_web_page_shows_the_steps_too() -> None:
    from orchestrator.web.render import readable as on_the_page

    assert on_the_page(_jsonl(GEMINI)) == readable(_jsonl(GEMINI))
