"""Agent transcripts made readable: the JSON events agent CLIs print become one short line per step.

The stored transcript keeps every event as the CLI printed it (`fleet logs --raw` shows it so); `fleet logs`, its
`--follow` and the web ticket page show it through readable(): Claude Code's stream-json, Codex's `exec --json`
events, OpenCode's and Gemini CLI's JSON events and the llm agent's conversation become lines such as
`→ Edit calc.py` or `$ pytest -q (exit 0)`; other lines (aider's and mini-swe-agent's output, Fleet's notes) are
shown as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

SHOWN_CHARS = 400  # of a message or a tool's input or output, per step


def readable(text: str) -> str:
    """The transcript with each JSON event line rendered as its step; every other line as it is."""
    return "".join(_render_line(line) for line in text.splitlines(keepends=True))


def _render_line(line: str) -> str:
    stripped = line.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return line
    try:
        event = json.loads(stripped)
    except ValueError:
        return line
    if not isinstance(event, dict):
        return line
    steps = [step for step in _steps(event) if step]
    return "".join(f"{_short(step)}\n" for step in steps) if steps else ""


def _short(text: str) -> str:
    text = text.rstrip()
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _args(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    return _flat(value)


def _flat(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return " ".join(text.split())


def _steps(event: dict[str, Any]) -> Iterator[str]:
    kind = str(event.get("type") or "")
    for prefix, render in RENDERERS:
        if kind.startswith(prefix) if prefix.endswith(".") else kind == prefix:
            yield from render(event)
            return
    if "role" in event and "content" in event:  # the llm agent's conversation
        if event["role"] != "system":
            yield f"{event['role']}: {_flat(event['content'])}"
    elif event.get("event") == "end":
        yield f"[end: {event.get('reason')}; {event.get('tokens_in')} in, {event.get('tokens_out')} out]"
    else:
        yield _flat(event)


def _claude_message(event: dict[str, Any]) -> Iterator[str]:
    message = event.get("message") or {}
    for block in message.get("content") or [] if isinstance(message, dict) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            yield f"assistant: {_flat(block.get('text', ''))}"
        elif block.get("type") == "tool_use":
            yield f"→ {block.get('name')} {_args(block.get('input'))}"
        elif block.get("type") == "tool_result":
            yield f"← {_flat(block.get('content', ''))}"


def _claude_result(event: dict[str, Any]) -> Iterator[str]:
    state = "error" if event.get("is_error") else "done"
    yield f"[{state}: {_flat(event.get('result', ''))}; cost ${event.get('total_cost_usd', 0)}]"


def _codex_item(event: dict[str, Any]) -> Iterator[str]:
    item = event.get("item") or {}
    kind = item.get("type")
    if event.get("type") == "item.started" and kind != "command_execution":
        return
    if kind == "command_execution":
        exit_code = item.get("exit_code")
        yield f"$ {item.get('command')}" + (f" (exit {exit_code})" if exit_code is not None else "")
    elif kind == "file_change":
        yield "edited " + ", ".join(str(c.get("path")) for c in item.get("changes") or [] if isinstance(c, dict))
    elif kind in ("agent_message", "reasoning", "error"):
        yield f"{kind.replace('_message', '')}: {_flat(item.get('text') or item.get('message') or '')}"
    else:
        yield f"{kind}: {_args(item)}"


def _opencode_tool(event: dict[str, Any]) -> Iterator[str]:
    part = event.get("part") or {}
    state = part.get("state") or {}
    yield f"→ {part.get('tool')} {_args(state.get('input'))}"
    if state.get("output"):
        yield f"← {_flat(state['output'])}"


def _gemini_tool(event: dict[str, Any]) -> Iterator[str]:
    yield f"→ {event.get('tool_name')} {_args(event.get('parameters'))}"


def _usage_line(event: dict[str, Any]) -> Iterator[str]:
    usage = event.get("usage") or (event.get("part") or {}).get("tokens") or (event.get("stats") or {})
    yield f"[{event.get('type')}: {_args(usage)}]"


def _error(event: dict[str, Any]) -> Iterator[str]:
    error = event.get("error") or event.get("message")
    if isinstance(error, dict):  # Codex's {"message"}, OpenCode's {"name", "data": {"message"}}
        error = error.get("message") or (error.get("data") or {}).get("message") or error
    yield f"error: {_flat(error)}"


RENDERERS: tuple[tuple[str, Callable[[dict[str, Any]], Iterator[str]]], ...] = (
    ("assistant", _claude_message),
    ("user", _claude_message),
    ("result", lambda e: _claude_result(e) if "is_error" in e else _usage_line(e)),
    ("system", lambda e: iter([f"[{e.get('subtype', 'system')}]"] if e.get("subtype") != "init" else [])),
    ("item.", _codex_item),
    ("turn.completed", _usage_line),
    ("turn.failed", _error),
    ("error", _error),
    ("tool_use", lambda e: _opencode_tool(e) if "part" in e else _gemini_tool(e)),
    ("tool_result", lambda e: iter([f"← {e.get('status')} {_flat(e.get('output', ''))}".rstrip()])),
    ("text", lambda e: iter([f"assistant: {_flat((e.get('part') or {}).get('text', ''))}"])),
    ("message", lambda e: iter([f"{e.get('role')}: {_flat(e.get('content', ''))}"])),
    ("step_finish", _usage_line),
    ("step_start", lambda e: iter(())),
    ("thread.started", lambda e: iter(())),
    ("turn.started", lambda e: iter(())),
    ("init", lambda e: iter([f"[init: {e.get('model', '')}]"])),
)
