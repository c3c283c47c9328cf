"""What the scripted model says to a real agent CLI: fix add() in the sample repository with that CLI's own tools.

Which CLI is asking is read from the tools its request offers (each CLI names its tools its own way), so one server
answers all of them at once. Each plan is a list of replies; the reply given is the one for the number of
assistant turns already in the conversation, so the CLI's retries and side calls never derail it:

    claude-code     Read calc.py, then Edit it (its Edit refuses a file it has not read).
    codex           exec_command running `apply_patch` (codex intercepts it and applies the patch itself).
    gemini          replace in calc.py (absolute path, from its "Workspace Directories").
    opencode        read, then edit (opencode's edit also wants the file read first).
    mini-swe-agent  its `bash` tool: sed, then the submit command it asks for.
    aider           no tools: a SEARCH/REPLACE block or the whole file, in whichever edit format its prompt asks.

A request with no tools that is none of these is a side call (a title, a summary): it gets a short answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from workers.agents.llm.wire import Conversation, Reply, ToolCall

OLD, NEW = "return a - b", "return a + b"
FILE = "calc.py"
SIDE_ANSWER = "Fix add() in calc.py"
DONE_TEXT = "Fixed add() in calc.py: it subtracted; it now adds."
WORKDIR = re.compile(
    r"(?:Primary working directory|Working directory|Workspace Directories:\*\*)\s*:?\s*(?:\n\s*-\s*)?(/[^\s\"'<>]+)"
)
MINI_SUBMIT = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")
PATCH = (
    "apply_patch <<'PATCH'\n*** Begin Patch\n"
    f"*** Update File: {FILE}\n@@\n def add(a, b):\n-    {OLD}\n+    {NEW}\n"
    "*** End Patch\nPATCH\n"
)


def workdir(conversation: Conversation) -> str:
    """The CLI's working directory as its system prompt states it ('' when it does not)."""
    found = WORKDIR.search(conversation.text)
    return found.group(1).rstrip(".,") if found else ""


def _path(conversation: Conversation) -> str:
    folder = workdir(conversation)
    return f"{folder}/{FILE}" if folder else FILE


def _call(name: str, **arguments: object) -> Reply:
    return Reply(text="", calls=(ToolCall(name, dict(arguments)),))


def _claude(c: Conversation) -> list[Reply]:
    path = _path(c)
    return [_call("Read", file_path=path), _call("Edit", file_path=path, old_string=OLD, new_string=NEW)]


def _codex(c: Conversation) -> list[Reply]:
    return [_call("exec_command", cmd=PATCH)]


def _gemini(c: Conversation) -> list[Reply]:
    instruction = "Make add() add its arguments instead of subtracting them."
    return [_call("replace", file_path=_path(c), instruction=instruction, old_string=OLD, new_string=NEW)]


def _opencode(c: Conversation) -> list[Reply]:
    path = _path(c)
    return [_call("read", filePath=path), _call("edit", filePath=path, oldString=OLD, newString=NEW)]


def _mini(c: Conversation) -> list[Reply]:
    submit = next((word for word in MINI_SUBMIT if word in c.text), MINI_SUBMIT[0])
    fix = f"sed -i 's/{OLD}/{NEW}/' {FILE} && cat {FILE}"
    return [_call("bash", command=fix), _call("bash", command=f"echo {submit}")]


PLANS: tuple[tuple[frozenset[str], Callable[[Conversation], list[Reply]]], ...] = (
    (frozenset({"Read", "Edit"}), _claude),
    (frozenset({"exec_command"}), _codex),
    (frozenset({"replace"}), _gemini),
    (frozenset({"read", "edit"}), _opencode),
    (frozenset({"bash"}), _mini),
)


def is_aider(conversation: Conversation) -> bool:
    """Aider's prompts name its edit formats."""
    return "*SEARCH/REPLACE block*" in conversation.text or "*file listing*" in conversation.text


def aider_reply(conversation: Conversation, whole_file: str) -> Reply:
    """One edit in aider's format: SEARCH/REPLACE when its prompt asks for it, else the whole file."""
    if "*SEARCH/REPLACE block*" in conversation.text:
        block = f"<<<<<<< SEARCH\n    {OLD}\n=======\n    {NEW}\n>>>>>>> REPLACE"
        return Reply(f"add() subtracts; it must add.\n\n{FILE}\n```python\n{block}\n```\n")
    return Reply(f"add() subtracts; it must add.\n\n{FILE}\n```python\n{whole_file}```\n")


def cli_reply(conversation: Conversation) -> Reply | None:
    """The next step of the plan for the CLI whose tools the request offers; None when no plan knows them."""
    for needs, plan in PLANS:
        if needs <= conversation.tools:
            steps = plan(conversation)
            return steps[conversation.turns] if conversation.turns < len(steps) else Reply(DONE_TEXT)
    return None


def side_reply(conversation: Conversation) -> Reply:
    """A title, a summary, a classification: a short plain answer."""
    return Reply(SIDE_ANSWER)
