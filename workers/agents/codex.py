"""OpenAI Codex CLI (`codex exec`), run non-interactively.

Follows openai/codex docs/exec.md and developers.openai.com/codex/noninteractive (Codex CLI 0.46 to 0.5x):
`codex exec` never asks for approval; `--sandbox workspace-write` lets it edit the working directory;
`--json` streams JSONL events (`thread.started`, `turn.started`, `item.*`, `turn.completed` with
`usage.input_tokens` / `cached_input_tokens` / `output_tokens`, `turn.failed`, `error`); a prompt of `-` is read
from standard input; `--skip-git-repo-check` because the worktree's `.git` may be hidden by a sandbox.
Codex reports no cost.
"""

from __future__ import annotations

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask


class CodexAgent(CliAgent):
    """`codex exec --json --sandbox S --skip-git-repo-check [--model M] -`, the ticket on stdin (S: own_sandbox)."""

    program = "codex"
    install = "npm install -g @openai/codex"
    model_hosts = ("api.openai.com:443", "chatgpt.com:443")

    def arguments(self, task: AgentTask) -> list[str]:
        flags = ["--json", "--sandbox", self.own_sandbox(task), "--skip-git-repo-check", *self.model_args("--model")]
        return ["exec", *gateway_provider(task), *flags]

    @staticmethod
    def own_sandbox(task: AgentTask) -> str:
        """Codex's own sandbox cannot start inside Fleet's (no user namespaces, unshare refused), and Fleet's
        confines it more tightly anyway: inside, Codex runs its commands unconfined; outside, in workspace-write."""
        return "danger-full-access" if task.wrapper else "workspace-write"

    def trailing(self, task: AgentTask) -> list[str]:
        return ["-"]

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        tokens_in = tokens_out = 0.0
        error = None
        for event in json_objects(output):
            kind = event.get("type")
            if kind == "turn.completed":
                tokens_in += number(dig(event, "usage", "input_tokens"))
                tokens_out += number(dig(event, "usage", "output_tokens"))
            elif kind == "turn.failed":
                error = str(dig(event, "error", "message") or "turn failed")
            elif kind == "error":
                error = str(event.get("message") or "error")
        return Usage(tokens_in=int(tokens_in), tokens_out=int(tokens_out), error=error)


def gateway_provider(task: AgentTask) -> list[str]:
    """Codex reaches Fleet's model gateway as a custom provider (`wire_api = "responses"`, its key from
    OPENAI_API_KEY, the placeholder): redirecting the built-in `openai` provider makes it try websockets first."""
    url = task.env.get("FLEET_GATEWAY_URL")
    if not url:
        return []
    provider = (
        f'{{ name = "Fleet gateway", base_url = "{url}/openai", env_key = "OPENAI_API_KEY", wire_api = "responses" }}'
    )
    return ["-c", f"model_providers.fleet={provider}", "-c", 'model_provider="fleet"']
