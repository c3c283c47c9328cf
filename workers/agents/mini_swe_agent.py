"""mini-swe-agent (`mini`), run without confirmations. Verified with mini-swe-agent 2.4.6.

`-t` gives the task (mini reads no task file or standard input, so the ticket is an argument), `-y`/`--yolo`
runs commands without asking, `--exit-immediately` ends without the final prompt, `-o` writes the trajectory JSON
whose `info.model_stats` has `instance_cost` and `api_calls`, `info.exit_status` says how it ended (`Submitted`,
or the exception's name) and each model message's `extra.response.usage` has the token counts.
`MSWEA_CONFIGURED=true` skips the first-run setup questions. mini-swe-agent 2.x stops with "This model isn't
mapped yet" for a model missing from litellm's price list: MSWEA_COST_TRACKING=ignore_errors lets it run (its cost
is then 0), and LITELLM_LOCAL_MODEL_COST_MAP=True stops litellm downloading that list (seconds) at every start.

Custom endpoint: `--agent-env OPENAI_API_BASE --agent-env OPENAI_API_KEY` with a model `openai/NAME`.
"""

from __future__ import annotations

import json
from typing import Any

from system.files import read_regular
from workers.agents.cli import CliAgent, Usage, dig, number, scratch_file
from workers.agents.contracts import AgentResult, AgentTask

# Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); stay under it with room for the encoding.
MAX_TASK_BYTES = 120_000
TRAJECTORY = "mini.traj.json"
MAX_TRAJECTORY_BYTES = 64 * 2**20  # read for its usage only: a longer one is counted as none
OFFLINE = {"MSWEA_CONFIGURED": "true", "MSWEA_COST_TRACKING": "ignore_errors", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
FINE_ENDINGS = ("Submitted", "LimitsExceeded")  # a limit is the agent giving up, not an environment error


class MiniSweAgent(CliAgent):
    """`mini -y --exit-immediately -o TRAJ [-m M] -t TASK`."""

    program = "mini"
    install = "pip install mini-swe-agent"
    model_hosts = ("api.openai.com:443", "api.anthropic.com:443")
    prompt_on_stdin = False

    def arguments(self, task: AgentTask) -> list[str]:
        return ["-y", "--exit-immediately", "-o", str(scratch_file(task, TRAJECTORY)), *self.model_args("--model")]

    def trailing(self, task: AgentTask) -> list[str]:
        return ["-t", task.prompt_file.read_text(encoding="utf-8", errors="replace")]

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        return {
            "MSWEA_CONFIGURED": "true",
            "MSWEA_COST_TRACKING": "ignore_errors",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }

    def run(self, task: AgentTask) -> AgentResult:
        size = task.prompt_file.stat().st_size
        if size > MAX_TASK_BYTES:
            return AgentResult(None, "", 0.0, error=f"the prompt ({size} bytes) is too long for mini's -t argument")
        scratch_file(task, TRAJECTORY).unlink(missing_ok=True)  # a re-delivered attempt must not read an old one
        return super().run(task)

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        written = read_regular(scratch_file(task, TRAJECTORY), MAX_TRAJECTORY_BYTES)  # never through a link
        try:
            data = json.loads(written) if written is not None else None
        except ValueError:
            return Usage()
        if not isinstance(data, dict):
            return Usage()
        messages = [m for m in data.get("messages") or [] if isinstance(m, dict)]
        usages = [dig(m, "extra", "response", "usage") for m in messages]
        return Usage(
            error=_ended_badly(data, messages),
            tokens_in=int(sum(number(dig(u, "prompt_tokens")) for u in usages)),
            tokens_out=int(sum(number(dig(u, "completion_tokens")) for u in usages)),
            cost_usd=number(dig(data, "info", "model_stats", "instance_cost")),
        )


def _ended_badly(data: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The exception that ended the run ("AuthenticationError: …"), or None when it ended as it should."""
    status = dig(data, "info", "exit_status")
    if not status or status in FINE_ENDINGS:
        return None
    said = next((dig(m, "extra", "exception_str") for m in reversed(messages) if m.get("role") == "exit"), None)
    return f"{status}: {said}" if said and not str(said).startswith("litellm") else str(said or status)
