"""The shell agent: runs any command-line coding agent as argv in the worktree; the ticket is only in a file."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from system.files import program_on
from system.process import ProcessResult
from workers.agents.base import AgentOptions, agent_env, run_agent_command
from workers.agents.contracts import AgentResult, AgentTask


class ShellAgent:
    """Runs options.command (never through a shell) with cwd = the worktree and the prompt in $FLEET_PROMPT_FILE."""

    runs_in_one_sandbox: ClassVar[bool] = True  # see workers/agent_sandbox.py SandboxPlan.git_in_memory

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        """Run the command once, within task.timeout and until task.cancelled; a nonzero exit is not an error."""
        if not self.options.command:
            return AgentResult(None, "", 0.0, error="the shell agent needs --agent-cmd")
        env = agent_env(task, self.options)
        program = resolve_program(self.options.command[0], env["PATH"])
        if program is None:
            return AgentResult(None, "", 0.0, error=f"agent command not found: {self.options.command[0]}")
        argv = [program, *self.options.command[1:], *self.options.extra_args]
        result = run_agent_command(
            task,
            argv,
            env=env,
            timeout=task.timeout,
            limit_bytes=self.options.transcript_limit,
            grace_seconds=self.options.grace_seconds,
        )
        return _to_agent_result(result, self.options.command[0], task.timeout)


def resolve_program(name: str, search_path: str) -> str | None:
    """The executable for name: looked up on search_path, or, if it has a slash, taken from the worker's cwd."""
    if "/" in name:
        # Relative to where the worker runs, never to the worktree: repository content must not become the agent.
        candidate = Path(name).absolute()
        return str(candidate) if candidate.is_file() else None
    return program_on(name, search_path)


def _to_agent_result(result: ProcessResult, program: str, timeout: float) -> AgentResult:
    error = None
    if result.sandbox_failed:
        error = result.sandbox_error
    elif result.not_found:
        error = f"agent command not found: {program}"
    elif result.timed_out:
        error = f"agent timed out after {timeout:g}s"
    elif result.cancelled:
        error = "agent cancelled"
    return AgentResult(
        exit_code=result.exit_code,
        transcript=result.output,
        duration=result.duration,
        timed_out=result.timed_out,
        cancelled=result.cancelled,
        error=error,
    )
