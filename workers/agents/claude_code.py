"""Claude Code (`claude`), run headless.

Follows the Claude Code headless / Agent SDK CLI documentation (docs.anthropic.com/en/docs/claude-code/sdk/
sdk-headless and code.claude.com/docs/en/headless, Claude Code 1.0.x to 2.x): `-p`/`--print` runs one prompt
non-interactively, reading it from standard input when no prompt argument is given; `--output-format json` prints
one result object with `total_cost_usd`, `is_error`, `subtype` and `usage` (`input_tokens`,
`cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`); `--permission-mode acceptEdits`
approves file edits without asking. Shell commands still need approval: add
`--permission-mode bypassPermissions` (or `--allowedTools ...`) to the extra arguments when the agent is sandboxed.
"""

from __future__ import annotations

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask


class ClaudeCodeAgent(CliAgent):
    """`claude -p --output-format json --permission-mode acceptEdits [--model M]`, the ticket on stdin."""

    program = "claude"
    install = "npm install -g @anthropic-ai/claude-code"
    model_hosts = ("api.anthropic.com:443",)

    def arguments(self, task: AgentTask) -> list[str]:
        return ["-p", "--output-format", "json", "--permission-mode", "acceptEdits", *self.model_args("--model")]

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        results = [o for o in json_objects(output) if o.get("type") == "result"]
        if not results:
            return Usage()
        last = results[-1]
        usage = last.get("usage") or {}
        keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        error = str(last.get("result") or last.get("subtype") or "error") if last.get("is_error") else None
        return Usage(
            tokens_in=int(sum(number(dig(usage, k)) for k in keys)),
            tokens_out=int(number(dig(usage, "output_tokens"))),
            cost_usd=number(last.get("total_cost_usd")),
            error=error,
        )
