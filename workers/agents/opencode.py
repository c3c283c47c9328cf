"""OpenCode (`opencode run`), run non-interactively.

Follows opencode.ai/docs/cli (`run` command) and packages/opencode/src/cli/cmd/run.ts (opencode 0.1x to 1.x):
`opencode run` sends one message and exits, appending standard input to the message when it is not a terminal;
permissions for edits are granted in `run`; `--format json` prints one JSON event per line, and each
`step_finish` event carries `part.cost` and `part.tokens` (`input`, `output`, `reasoning`, `cache.read`,
`cache.write`); `--model` takes `provider/model`.
"""

from __future__ import annotations

import json

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask


class OpenCodeAgent(CliAgent):
    """`opencode run --format json [--model provider/model]`, the ticket on stdin."""

    program = "opencode"
    install = "npm install -g opencode-ai"
    model_hosts = ("api.openai.com:443", "api.anthropic.com:443", "models.dev:443")

    def arguments(self, task: AgentTask) -> list[str]:
        return ["run", "--format", "json", *self.model_args("--model")]

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        """Fleet's model gateway as the base URL of each provider (their SDKs disagree on where /v1 goes)."""
        url, key = task.env.get("FLEET_GATEWAY_URL"), task.env.get("FLEET_GATEWAY_KEY", "")
        if not url:
            return {}
        bases = {"openai": f"{url}/openai", "anthropic": f"{url}/anthropic/v1", "google": f"{url}/gemini/v1beta"}
        providers = {name: {"options": {"baseURL": base, "apiKey": key}} for name, base in bases.items()}
        return {"OPENCODE_CONFIG_CONTENT": json.dumps({"provider": providers})}

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        tokens_in = tokens_out = cost = 0.0
        error = None
        for event in json_objects(output):
            if event.get("type") == "error":
                error = str(dig(event, "error", "data", "message") or dig(event, "error", "name") or "error")
            if event.get("type") != "step_finish":
                continue
            tokens = dig(event, "part", "tokens") or {}
            cache = dig(tokens, "cache") or {}
            tokens_in += number(tokens.get("input")) + number(cache.get("read")) + number(cache.get("write"))
            tokens_out += number(tokens.get("output")) + number(tokens.get("reasoning"))
            cost += number(dig(event, "part", "cost"))
        return Usage(tokens_in=int(tokens_in), tokens_out=int(tokens_out), cost_usd=cost, error=error)
