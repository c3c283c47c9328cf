"""OpenCode (`opencode run`), run non-interactively. Verified with opencode-ai 1.18.33.

`opencode run` sends one message and exits, appending standard input to the message when it is not a terminal;
permissions for edits are granted in `run`; `--format json` prints one JSON event a line (`step_start`,
`tool_use` with each tool's input and output, `text`, `step_finish` with `part.cost` and `part.tokens`, `error`),
which the transcript keeps; `--model` takes `provider/model`. OpenCode exits 0 after an API error: the `error`
event is what says so.

Custom endpoint: `--agent-env OPENAI_BASE_URL --agent-env OPENAI_API_KEY`. Fleet writes an OpenCode config in the
attempt's scratch folder (OPENCODE_CONFIG) with a provider `fleet` (@ai-sdk/openai-compatible, bundled with
OpenCode) at that URL, used for the model and the small model (titles); `--model NAME` becomes `fleet/NAME`.
OpenCode's JSON leaves its title call out, so its own token count is short of what was billed.
"""

from __future__ import annotations

import json

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number, scratch_file
from workers.agents.contracts import AgentTask

BASE_URL, KEY = "OPENAI_BASE_URL", "OPENAI_API_KEY"
PROVIDER = "fleet"


class OpenCodeAgent(CliAgent):
    """`opencode run --format json [--model provider/model]`, the ticket on stdin."""

    program = "opencode"
    install = "npm install -g opencode-ai"
    model_hosts = ("api.openai.com:443", "api.anthropic.com:443", "models.dev:443")

    def arguments(self, task: AgentTask) -> list[str]:
        return ["run", "--format", "json"]

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        return {"OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1"}

    def prepare(self, task: AgentTask, env: dict[str, str]) -> list[str]:
        model = self.options.model
        if not env.get(BASE_URL):
            return self.model_args("--model")
        name = (model or "default").removeprefix(f"{PROVIDER}/")
        provider = {
            "npm": "@ai-sdk/openai-compatible",
            "name": PROVIDER,
            "options": {"baseURL": env[BASE_URL], "apiKey": f"{{env:{KEY}}}"},
            "models": {name: {"name": name}},
        }
        chosen = f"{PROVIDER}/{name}"
        config = {"provider": {PROVIDER: provider}, "model": chosen, "small_model": chosen, "autoupdate": False}
        path = scratch_file(task, "opencode.json")
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        env["OPENCODE_CONFIG"] = str(path)
        return ["--model", chosen]

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
