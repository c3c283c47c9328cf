"""OpenAI Codex CLI (`codex exec`), run non-interactively. Verified with @openai/codex 0.171.0.

`codex exec` never asks for approval; `--json` streams JSONL events (`thread.started`, `turn.started`, `item.*`
for each command, file change and message, `turn.completed` with `usage`, `turn.failed`, `error`), which the
transcript keeps; a prompt of `-` is read from standard input; `--skip-git-repo-check` because the worktree's
`.git` may be hidden by a sandbox.

Inside Fleet's sandbox Codex's own sandbox is off (`--sandbox danger-full-access`): it would run bubblewrap inside
Fleet's, which has no user namespaces left to give and a read-only temporary folder, and its edits fail ("Failed to
write file"). Fleet's sandbox contains it instead. Unsandboxed, Codex keeps `workspace-write`.

Custom endpoint: `--agent-env OPENAI_BASE_URL --agent-env OPENAI_API_KEY`. The base URL becomes a custom model
provider (`-c model_providers.fleet={base_url=…, env_key="OPENAI_API_KEY", wire_api="responses"}`): redirecting
the built-in provider instead makes Codex try a websocket first. Codex reports tokens, never a cost.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from workers.agents.cli import CliAgent, Usage, dig, json_objects, number
from workers.agents.contracts import AgentTask

BASE_URL, KEY = "OPENAI_BASE_URL", "OPENAI_API_KEY"
PROVIDER = "fleet"


class CodexAgent(CliAgent):
    """`codex exec --json --sandbox S --skip-git-repo-check [provider] [--model M] -`, the ticket on stdin."""

    program = "codex"
    install = "npm install -g @openai/codex"
    model_hosts = ("api.openai.com:443", "chatgpt.com:443")

    def arguments(self, task: AgentTask) -> list[str]:
        flags = ["--json", "--sandbox", self.own_sandbox(task), "--skip-git-repo-check", *self.model_args("--model")]
        return ["exec", *flags]

    @staticmethod
    def own_sandbox(task: AgentTask) -> str:
        """Codex's own sandbox cannot start inside Fleet's, and Fleet's confines it anyway (see the docstring)."""
        return "danger-full-access" if task.wrapper else "workspace-write"

    def prepare(self, task: AgentTask, env: dict[str, str]) -> list[str]:
        url = env.get(BASE_URL, "")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            return []
        # JSON strings are TOML basic strings: the URL cannot break out of its value.
        provider = f'{{name="{PROVIDER}", base_url={json.dumps(url)}, env_key="{KEY}", wire_api="responses"}}'
        return ["-c", f'model_provider="{PROVIDER}"', "-c", f"model_providers.{PROVIDER}={provider}"]

    def trailing(self, task: AgentTask) -> list[str]:
        return ["-"]

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        tokens_in = tokens_out = 0.0
        failed = reported = None
        completed = False
        for event in json_objects(output):
            kind = event.get("type")
            if kind == "turn.completed":
                completed = True
                tokens_in += number(dig(event, "usage", "input_tokens"))
                tokens_out += number(dig(event, "usage", "output_tokens"))
            elif kind == "turn.failed":
                failed = str(dig(event, "error", "message") or "turn failed")
            elif kind == "error":  # also sent while a stream is retried: an error only when no turn completes
                reported = str(event.get("message") or "error")
        error = failed or (None if completed else reported)
        return Usage(tokens_in=int(tokens_in), tokens_out=int(tokens_out), error=error)
