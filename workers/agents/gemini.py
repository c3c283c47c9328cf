"""Gemini CLI (`gemini`), run headless. Verified with @google/gemini-cli 0.61.0.

Headless mode starts when standard input is not a terminal, and piped input is the prompt;
`--output-format stream-json` prints one JSON event a line (`init`, `message`, `tool_use`, `tool_result`, then
`result` with `status`, `stats` and, on failure, `error`), so the transcript keeps the steps;
`--approval-mode auto_edit` approves its edit tools (`replace`, `write_file`) without asking; `--skip-trust`
because headless Gemini refuses a folder it has not been told to trust (exit 55).

Custom endpoint: `--agent-env GOOGLE_GEMINI_BASE_URL --agent-env GEMINI_API_KEY`. Gemini then also needs its auth
type chosen in its settings (`security.auth.selectedType`): Fleet gives it a settings folder of its own in the
attempt's scratch folder (GEMINI_CLI_HOME) that says `gemini-api-key`. Gemini CLI reports tokens, never a cost.
Node's WebAssembly reserves far more address space than it uses: this agent runs without an address-space limit
by default (the memory cgroup still binds).
"""

from __future__ import annotations

import json
from typing import Any

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number, scratch_file
from workers.agents.contracts import AgentTask

SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}}


class GeminiAgent(CliAgent):
    """`gemini --output-format stream-json --approval-mode auto_edit --skip-trust [--model M]`, ticket on stdin."""

    program = "gemini"
    install = "npm install -g @google/gemini-cli"
    model_hosts = (
        "generativelanguage.googleapis.com:443",
        "cloudcode-pa.googleapis.com:443",
        "oauth2.googleapis.com:443",
    )
    address_space_mb = 0

    def arguments(self, task: AgentTask) -> list[str]:
        flags = ["--output-format", "stream-json", "--approval-mode", "auto_edit", "--skip-trust"]
        return [*flags, *self.model_args("--model")]

    def prepare(self, task: AgentTask, env: dict[str, str]) -> list[str]:
        if env.get("GOOGLE_GEMINI_BASE_URL") and "GEMINI_CLI_HOME" not in env:
            home = scratch_file(task, "gemini-home")
            (home / ".gemini").mkdir(parents=True, exist_ok=True)
            (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS), encoding="utf-8")
            env["GEMINI_CLI_HOME"] = str(home)
        return []

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        reports = [o for o in json_objects(output) if o.get("type") == "result" or "stats" in o or "error" in o]
        if not reports:
            return Usage()
        last = reports[-1]
        tokens_in, tokens_out = _tokens(last.get("stats") or {})
        error = last.get("error") or (last.get("status") if last.get("status") not in (None, "success") else None)
        message = dig(error, "message") if isinstance(error, dict) else error
        return Usage(tokens_in=tokens_in, tokens_out=tokens_out, error=str(message) if error else None)


def _tokens(stats: dict[str, Any]) -> tuple[int, int]:
    """(in, out) from stream-json's `stats.input_tokens`/`output_tokens`, or json's `stats.models.*.tokens`."""
    if "input_tokens" in stats:
        return int(number(stats.get("input_tokens"))), int(number(stats.get("output_tokens")))
    models = stats.get("models")
    tokens = [dig(m, "tokens") or {} for m in models.values()] if isinstance(models, dict) else []
    tokens_in = sum(number(t.get("prompt")) for t in tokens)
    tokens_out = sum(number(t.get("candidates")) + number(t.get("thoughts")) for t in tokens)
    return int(tokens_in), int(tokens_out)
