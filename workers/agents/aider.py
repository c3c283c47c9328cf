"""Aider (`aider`), scripted from the command line. Verified with aider-chat 0.86.2.

Follows aider.chat/docs/scripting.html and aider.chat/docs/config/options.html (aider 0.8x): `--message-file`
sends one message and exits; `--yes-always` answers every confirmation; `--no-auto-commits` leaves the edits
uncommitted for Fleet to diff; `--no-gitignore` stops it adding `.aider*` to .gitignore; the chat and input
histories go next to the prompt, outside the worktree. Aider has no machine-readable output: usage is read from its
report line, as printed by Coder.calculate_and_show_tokens_and_cost in aider/coders/base_coder.py:
`Tokens: 2.5k sent, 1.2k cache hit, 310 received. Cost: $0.0091 message, $0.02 session.`
`--no-stream` because a streamed answer carries no usage: aider would print its own estimate. Its counts are
rounded to hundreds ("1.1k") and its session cost to cents, so its own report is approximate.

Aider exits 0 after an API error (a bad key, a refused request): a `litellm.…Error:` line is what says so, and it
ends the attempt as an error. Custom endpoint: `--agent-env OPENAI_API_BASE --agent-env OPENAI_API_KEY` with a
model `openai/NAME` (litellm's OpenAI-compatible route). litellm's price list is read from its own copy
(LITELLM_LOCAL_MODEL_COST_MAP), not downloaded at every start.
"""

from __future__ import annotations

import contextlib
import re

from system.files import remove_tree
from workers.agents.cli import CliAgent, Usage, scratch_file
from workers.agents.contracts import AgentResult, AgentTask

TOKENS = re.compile(r"^Tokens: (?P<sent>[\d.]+k?) sent,.*?(?P<received>[\d.]+k?) received\.", re.M)
SESSION_COST = re.compile(r"Cost: \$[\d.]+ message, \$(?P<session>[\d.]+) session\.")
API_ERROR = re.compile(r"^(litellm\.\w+Error: .*)$", re.M)


class AiderAgent(CliAgent):
    """`aider --message-file PROMPT --yes-always --no-auto-commits ... [--model M]`."""

    program = "aider"
    install = "python -m pip install aider-install && aider-install"
    model_hosts = ("api.openai.com:443", "api.anthropic.com:443")
    prompt_on_stdin = False

    def arguments(self, task: AgentTask) -> list[str]:
        return [
            "--message-file",
            str(task.prompt_file),
            "--yes-always",
            "--no-auto-commits",
            "--no-gitignore",
            "--no-pretty",
            "--no-check-update",
            "--no-stream",
            "--no-analytics",
            "--no-show-model-warnings",
            "--chat-history-file",
            str(scratch_file(task, "aider.chat.history.md")),
            "--input-history-file",
            str(scratch_file(task, "aider.input.history")),
            *self.model_args("--model"),
        ]

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        return {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def run(self, task: AgentTask) -> AgentResult:
        result = super().run(task)
        # The repo-map cache is the one file aider cannot be told to keep elsewhere; it is not part of the change.
        for cache in task.worktree.glob(".aider.tags.cache.v*"):
            with contextlib.suppress(OSError):
                remove_tree(cache)
        return result

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        reports = list(TOKENS.finditer(output))
        costs = SESSION_COST.findall(output)
        return Usage(
            tokens_in=sum(_count(m["sent"]) for m in reports),
            tokens_out=sum(_count(m["received"]) for m in reports),
            cost_usd=float(costs[-1]) if costs else 0.0,
            error=errors[-1].strip() if (errors := API_ERROR.findall(output)) else None,
        )


def _count(text: str) -> int:
    """Aider's format_tokens backwards: '310' -> 310, '2.5k' -> 2500, '12k' -> 12000 (rounded, as printed)."""
    return round(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))
