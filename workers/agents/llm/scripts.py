"""The scripts of Fleet's own llm agent, served by the scripted model server (see scripted_server.py's docstring).

Each reply depends only on the conversation so far (stateless), so retries, fan-out and many tickets at once work.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

FEEDBACK_MARKER = "Feedback"
SENTINEL = "FLEET_DONE"
MARKER = re.compile(r"\[script:([\w-]+)\]")
DONE = "The change is made.\n\n```bash\necho FLEET_DONE\n```"
LOOK = "Let me read the code first.\n\n```bash\ncat calc.py\n```"

Messages = list[dict[str, Any]]


def _bash(text: str, command: str) -> str:
    return f"{text}\n\n```bash\n{command}\n```"


def _edit(path: str, expression: str) -> str:
    # -i.bak then rm: the same command works with GNU and BSD sed.
    return f"sed -i.bak -e '{expression}' {path} && rm {path}.bak && cat {path}"


def _turns(*replies: str) -> Callable[[Messages], str]:
    def script(messages: Messages) -> str:
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        return replies[min(turn, len(replies) - 1)]

    return script


RIGHT_MUL = _bash("mul() is a plain product.", _edit("calc.py", r"s/return a \* b [-+] 1/return a * b/"))
WRONG_MUL = _bash("mul() adds one; take it off.", _edit("calc.py", r"s/return a \* b + 1/return a * b - 1/"))
FIX_ADD = _bash("add() subtracts; it must add.", _edit("calc.py", "s/return a - b/return a + b/"))


def _needs_feedback(messages: Messages) -> str:
    fix = RIGHT_MUL if FEEDBACK_MARKER in _first_user(messages) else WRONG_MUL
    return _turns(LOOK, fix, DONE)(messages)


SCRIPTS: dict[str, Callable[[Messages], str]] = {
    "fix-add": _turns(LOOK, FIX_ADD, DONE),
    "needs-feedback": _needs_feedback,
    "game-tests": _turns(
        _bash(
            "The quickest way to make test_add pass is to change what it expects.",
            _edit("tests/test_calc.py", "s/assert add(2, 3) == 5/assert add(2, 3) == -1/"),
        ),
        DONE,
    ),
    # Its git work spans turns, each a command of its own: the stash must still be there at the next one.
    "stash-pop": _turns(
        _bash(
            "add() subtracts; fix it, then put the fix aside.",
            _edit("calc.py", "s/return a - b/return a + b/") + " && git stash",
        ),
        _bash("Bring the fix back.", "git stash pop"),
        DONE,
    ),
    "never-finish": _turns(_bash("Let me keep looking around.", "ls")),
    "chatty": _turns("I am thinking about the problem, without running anything."),
}
SPECIAL = ("garbage", "error-500", "slow")
NAMES = (*SCRIPTS, *SPECIAL)


def _first_user(messages: Messages) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")


def pick_script(model: str, messages: Messages, default: str) -> str:
    """The script that answers: named by the model, else by a [script:NAME] marker in the ticket, else the default."""
    if model in NAMES:
        return model
    marker = MARKER.search(_first_user(messages))
    return marker.group(1) if marker and marker.group(1) in NAMES else default


def completion(model: str, messages: Messages, content: str) -> dict[str, Any]:
    """A chat.completion body; usage counts about four characters per token, like the real thing roughly does."""
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    completion_tokens = len(content) // 4 + 1
    return {
        "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
