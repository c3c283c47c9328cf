"""Gemini CLI (`gemini`), run headless.

Follows google-gemini/gemini-cli docs/cli/headless.md and docs/cli/cli-reference.md (Gemini CLI 0.1x to 0.3x):
headless mode starts when standard input is not a terminal, and piped input is the prompt;
`--output-format json` prints one (pretty-printed) object with `response`, `stats` and, on failure, `error`;
token counts are under `stats.models.<model>.tokens` (`prompt`, `candidates`, `thoughts`, `cached`, `total`);
`--approval-mode auto_edit` approves edits without asking. Gemini CLI reports no cost.
"""

from __future__ import annotations

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask


class GeminiAgent(CliAgent):
    """`gemini --output-format json --approval-mode auto_edit [--model M]`, the ticket on stdin."""

    program = "gemini"
    install = "npm install -g @google/gemini-cli"
    model_hosts = (
        "generativelanguage.googleapis.com:443",
        "cloudcode-pa.googleapis.com:443",
        "oauth2.googleapis.com:443",
    )

    def arguments(self, task: AgentTask) -> list[str]:
        return ["--output-format", "json", "--approval-mode", "auto_edit", *self.model_args("--model")]

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        reports = [o for o in json_objects(output) if "stats" in o or "error" in o]
        if not reports:
            return Usage()
        last = reports[-1]
        models = dig(last, "stats", "models")
        tokens = [dig(m, "tokens") or {} for m in models.values()] if isinstance(models, dict) else []
        error = last.get("error")
        return Usage(
            tokens_in=int(sum(number(t.get("prompt")) for t in tokens)),
            tokens_out=int(sum(number(t.get("candidates")) + number(t.get("thoughts")) for t in tokens)),
            error=str(dig(error, "message") or error) if error else None,
        )
