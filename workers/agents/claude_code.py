"""Claude Code (`claude`), run headless. Verified with @anthropic-ai/claude-code 2.1.197.

`-p` runs one prompt non-interactively, reading it from standard input; `--output-format stream-json --verbose`
prints one JSON event a line (the system init, each assistant message with its tool calls, each tool result) and
ends with the `result` object, so the transcript keeps the steps. `--permission-mode acceptEdits` approves file
edits (its Read and Edit tools) without asking; shell commands still need approval: add
`--permission-mode bypassPermissions` to the agent arguments to allow them (Fleet's sandbox contains them).

Custom endpoint: `--agent-env ANTHROPIC_BASE_URL --agent-env ANTHROPIC_API_KEY` (Claude Code appends
/v1/messages). Usage: the result's `modelUsage` (every model, side calls included); its `usage` leaves the side
calls out, so it is used only when `modelUsage` is missing. Cost: `total_cost_usd`, Claude Code's own prices.
"""

from __future__ import annotations

from typing import Any

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask

QUIET = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1"}


class ClaudeCodeAgent(CliAgent):
    """`claude -p --output-format stream-json --verbose --permission-mode acceptEdits [--model M]`, ticket on stdin."""

    program = "claude"
    install = "npm install -g @anthropic-ai/claude-code"
    model_hosts = ("api.anthropic.com:443",)

    def arguments(self, task: AgentTask) -> list[str]:
        flags = ["--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]
        return ["-p", *flags, *self.model_args("--model")]

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        return dict(QUIET)

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        results = [o for o in json_objects(output) if o.get("type") == "result"]
        if not results:
            return Usage()
        last = results[-1]
        error = str(last.get("result") or last.get("subtype") or "error") if last.get("is_error") else None
        tokens_in, tokens_out = _model_usage(last.get("modelUsage")) or _usage(last.get("usage") or {})
        return Usage(tokens_in, tokens_out, cost_usd=number(last.get("total_cost_usd")), error=error)


def _model_usage(models: Any) -> tuple[int, int] | None:
    """(in, out) summed over `modelUsage`, cache reads and writes counted as input; None when it is empty."""
    if not isinstance(models, dict) or not models:
        return None
    keys = ("inputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")
    tokens_in = sum(number(dig(m, k)) for m in models.values() for k in keys)
    return int(tokens_in), int(sum(number(dig(m, "outputTokens")) for m in models.values()))


def _usage(usage: dict[str, Any]) -> tuple[int, int]:
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return int(sum(number(usage.get(k)) for k in keys)), int(number(usage.get("output_tokens")))
