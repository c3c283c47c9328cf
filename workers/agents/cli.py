"""What the adapters for agent CLIs share: find the program, run it once in the worktree, read its usage report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from system.process import ProcessResult
from workers.agents.base import AgentOptions, agent_env, run_agent_command
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.shell import resolve_program


@dataclass(frozen=True)
class Usage:
    """What one CLI run reports about itself: tokens, cost, and an error the CLI declared (not a failing test)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    error: str | None = None


class CliAgent:
    """One agent CLI run non-interactively in the worktree; subclasses say how to call it and how to read it."""

    program: ClassVar[str] = ""
    install: ClassVar[str] = ""
    # The ticket goes to the CLI on standard input when it documents reading it there: an argument is capped
    # by the kernel (128 KiB) and shows in `ps`.
    prompt_on_stdin: ClassVar[bool] = True
    # The CLI calls its model API itself: with agent_network "auto", it gets the egress proxy (workers/egress.py).
    needs_network: ClassVar[bool] = True
    runs_in_one_sandbox: ClassVar[bool] = True  # see workers/agent_sandbox.py SandboxPlan.git_in_memory
    # What its sandbox may reach (host:port) through the egress proxy, besides the repository's agent_hosts and
    # the hosts of the base URLs passed to it (--agent-env ANTHROPIC_BASE_URL and the like).
    model_hosts: ClassVar[tuple[str, ...]] = ()
    # This CLI's own default address-space limit in MiB (0: none), over the worker's; None: the worker's.
    address_space_mb: ClassVar[int | None] = None

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def arguments(self, task: AgentTask) -> list[str]:
        """The CLI's arguments after the program name, before options.extra_args."""
        raise NotImplementedError

    def trailing(self, task: AgentTask) -> list[str]:
        """Arguments that must come last, after options.extra_args (a positional prompt)."""
        return []

    def parse_usage(self, output: str, task: AgentTask) -> Usage:
        """Tokens and cost from the CLI's output (stdout and stderr interleaved)."""
        return Usage()

    def extra_env(self, task: AgentTask) -> dict[str, str]:
        """Variables the CLI needs to stay non-interactive."""
        return {}

    def prepare(self, task: AgentTask, env: dict[str, str]) -> list[str]:
        """Point the CLI at the endpoint its environment names (config files in the scratch folder, variables added
        to env); returns arguments to add after arguments(). By default nothing: the CLI reads its variables."""
        return []

    def run(self, task: AgentTask) -> AgentResult:
        """Run the CLI once; a missing CLI, a time-out, a cancel or an error the CLI reports ends in result.error."""
        env = {**agent_env(task, self.options), **self.extra_env(task)}
        name = self.options.command[0] if self.options.command else self.program
        program = resolve_program(name, env["PATH"])
        if program is None:
            return AgentResult(None, "", 0.0, error=self.not_found_message(name))
        configured = self.prepare(task, env)
        argv = [program, *self.options.command[1:], *self.arguments(task), *configured, *self.options.extra_args]
        argv += self.trailing(task)
        stdin = task.prompt_file.read_bytes() if self.prompt_on_stdin else None
        result = run_agent_command(
            task,
            argv,
            env=env,
            timeout=task.timeout,
            limit_bytes=self.options.transcript_limit,
            grace_seconds=self.options.grace_seconds,
            stdin=stdin,
        )
        return self._to_result(result, self.parse_usage(result.output, task), name, task.timeout)

    def not_found_message(self, name: str) -> str:
        hint = f" ({self.install})" if self.install else ""
        return f"{name} not found on PATH; install it or pick another --agent{hint}"

    def model_args(self, flag: str) -> list[str]:
        return [flag, self.options.model] if self.options.model else []

    def _to_result(self, result: ProcessResult, usage: Usage, name: str, timeout: float) -> AgentResult:
        error = f"{name} reported an error: {usage.error}" if usage.error else None
        if result.sandbox_failed:
            error = result.sandbox_error
        elif result.not_found:
            error = self.not_found_message(name)
        elif result.timed_out:
            error = f"{name} timed out after {timeout:g}s"
        elif result.cancelled:
            error = f"{name} cancelled"
        return AgentResult(
            exit_code=result.exit_code,
            transcript=result.output,
            duration=result.duration,
            timed_out=result.timed_out,
            cancelled=result.cancelled,
            error=error,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=usage.cost_usd,
        )


def json_objects(output: str) -> Iterator[dict[str, Any]]:
    """Every JSON object that starts a line of output, in order (one-line JSONL and pretty-printed alike).

    stdout and stderr arrive interleaved, so the output is scanned rather than parsed whole.
    """
    decoder = json.JSONDecoder()
    position = 0
    while (start := _next_brace(output, position)) >= 0:
        try:
            found, end = decoder.raw_decode(output, start)
        except ValueError:
            position = start + 1
            continue
        if isinstance(found, dict):
            yield found
        position = end


def _next_brace(text: str, position: int) -> int:
    while position < len(text):
        index = text.find("{", position)
        if index < 0:
            return -1
        if index == 0 or text[index - 1] == "\n":
            return index
        position = index + 1
    return -1


def number(value: Any) -> float:
    """value as a number; 0 for anything else (a CLI's report may omit or null a field)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]...; None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def scratch_file(task: AgentTask, name: str) -> Path:
    """A file for the CLI's own records next to the prompt, outside the worktree so it never enters the diff."""
    return task.prompt_file.parent / name
