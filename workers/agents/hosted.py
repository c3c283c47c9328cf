"""Allow-listed agent classes (FLEET_AGENT_CLASSES), each run in a Python process of its own.

The worker never imports such a class. HostedAgent starts `python -P -m workers.agents.hosted pkg.mod:Class`
through run_agent_command, so the class runs like any agent command: inside the attempt's sandbox and cgroups,
with the agent's environment and time limit. The task goes in as JSON on standard input; the child builds the
class with the AgentOptions, calls run(task) and writes the AgentResult's fields as JSON to a file in the
attempt's agent folder, which the worker reads back (tokens and cost included). Whatever the class raises,
SystemExit and KeyboardInterrupt included, becomes the attempt's error, naming the exception's type.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

from system.cancel import Cancellation
from system.files import read_regular
from system.process import BoundedOutput, ProcessResult
from workers.agents import AgentError, import_class
from workers.agents.base import AgentOptions, agent_env, run_agent_command
from workers.agents.contracts import AgentResult, AgentTask

MODULE = "workers.agents.hosted"
RESULT_FILE = "hosted-result.json"
RESULT_TYPES: dict[str, type | tuple[type, ...]] = {
    "exit_code": (int, type(None)),
    "transcript": str,
    "duration": (int, float),
    "timed_out": bool,
    "cancelled": bool,
    "error": (str, type(None)),
    "tokens_in": int,
    "tokens_out": int,
    "cost_usd": (int, float),
}


class HostedAgent:
    """Runs an allow-listed class's run(task) in a child process, in the attempt's sandbox and cgroups."""

    # Like the agent CLIs, a class calls its model itself: with agent_network "auto" it gets the egress proxy.
    needs_network: ClassVar[bool] = True
    runs_in_one_sandbox: ClassVar[bool] = True  # see workers/agent_sandbox.py SandboxPlan.git_in_memory

    def __init__(self, path: str, options: AgentOptions) -> None:
        self.path = path
        self.options = options

    def run(self, task: AgentTask) -> AgentResult:
        """Run the class once in its own process; a crash, a time-out or a cancel ends in result.error."""
        result_file = task.prompt_file.parent / RESULT_FILE
        result_file.unlink(missing_ok=True)  # left by an earlier delivery of the same attempt
        request = {"options": asdict(self.options), "task": _task_fields(task), "result_file": str(result_file)}
        process = run_agent_command(
            task,
            [sys.executable, "-P", "-m", MODULE, self.path],  # -P: the worktree's files never shadow a module
            env=self._env(task),
            timeout=task.timeout,
            limit_bytes=self.options.transcript_limit,
            grace_seconds=self.options.grace_seconds,
            stdin=json.dumps(request).encode(),
        )
        return self._to_result(process, result_file, task.timeout)

    def _env(self, task: AgentTask) -> dict[str, str]:
        """The agent's environment, and the worker's PYTHONPATH: the class is importable where the worker is.

        Absolute folders only: a relative one would name the worktree, whose files must never become the agent.
        """
        env = agent_env(task, self.options)
        folders = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(p)]
        if folders:
            env["PYTHONPATH"] = os.pathsep.join(folders)
        else:
            env.pop("PYTHONPATH", None)
        return env

    def _to_result(self, process: ProcessResult, result_file: Path, timeout: float) -> AgentResult:
        ended = process.exit_code == 0 and not (process.timed_out or process.cancelled)
        reported = _read_result(result_file, 4 * self.options.transcript_limit + 65_536) if ended else None
        error = None
        if process.sandbox_failed:
            error = process.sandbox_error
        elif process.timed_out:
            error = f"agent timed out after {timeout:g}s"
        elif process.cancelled:
            error = "agent cancelled"
        elif reported is None:
            last = process.output.strip().splitlines()[-1:] or ["no output"]
            error = f"agent class {self.path} ended without a result (exit code {process.exit_code}): {last[0]}"
        base = reported or AgentResult(process.exit_code, "", 0.0)
        bounded = BoundedOutput(self.options.transcript_limit)
        bounded.write(base.transcript.encode())
        return replace(
            base,
            transcript=process.output + bounded.text(),
            duration=process.duration,
            timed_out=process.timed_out,
            cancelled=process.cancelled,
            error=error or base.error,
        )


def _task_fields(task: AgentTask) -> dict[str, Any]:
    return {
        "worktree": str(task.worktree),
        "prompt_file": str(task.prompt_file),
        "ticket_id": task.ticket_id,
        "attempt": task.attempt,
        "run": task.run,
        "timeout": task.timeout,
        "env": task.env,
    }


def _read_result(path: Path, limit_bytes: int) -> AgentResult | None:
    """The child's report, or None when it is missing, too big or not the AgentResult's fields and types."""
    report = read_regular(path, limit_bytes + 1)  # written in the sandbox: a link there is never followed
    if report is None or len(report) > limit_bytes:
        return None
    try:
        data = json.loads(report)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) - set(RESULT_TYPES):
        return None
    if any(not isinstance(data[key], RESULT_TYPES[key]) for key in data):
        return None
    fields: dict[str, Any] = {"exit_code": None, "transcript": "", "duration": 0.0} | data
    return AgentResult(**fields)


# --- the child process -------------------------------------------------------------------------------


def _task(fields: dict[str, Any]) -> AgentTask:
    # Already inside the attempt's sandbox and cgroups: the class's own commands inherit both and need no wrapper.
    # Cancellation is the worker's: it ends this whole process group.
    return AgentTask(
        worktree=Path(fields["worktree"]),
        prompt_file=Path(fields["prompt_file"]),
        ticket_id=int(fields["ticket_id"]),
        attempt=int(fields["attempt"]),
        run=int(fields["run"]),
        timeout=float(fields["timeout"]),
        cancelled=Cancellation(),  # never set: its commands' waits sleep until they exit
        env=dict(fields["env"]),
    )


def _options(fields: dict[str, Any]) -> AgentOptions:
    values: dict[str, Any] = {key: tuple(v) if isinstance(v, list) else v for key, v in fields.items()}
    return AgentOptions(**values)


def _failed(error: str) -> AgentResult:
    return AgentResult(None, "", 0.0, error=error)


def run_class(path: str, request: dict[str, Any]) -> AgentResult:
    """Build the class at path and run it once; whatever goes wrong is the result's error."""
    try:
        agent = import_class(path)(_options(request["options"]))
        if not callable(getattr(agent, "run", None)):
            return _failed(f"agent class {path} has no run(task) method")
        result = agent.run(_task(request["task"]))
    except AgentError as exc:
        return _failed(f"agent class {path}: {exc}")
    except BaseException as exc:  # foreign code: SystemExit, KeyboardInterrupt... each ends the attempt, named
        traceback.print_exc()
        return _failed(f"agent class {path} raised {type(exc).__name__}" + (f": {exc}" if str(exc) else ""))
    if not isinstance(result, AgentResult):
        return _failed(f"agent class {path}: run(task) returned {type(result).__name__}, not an AgentResult")
    return result


def main(argv: list[str]) -> int:
    """`python -m workers.agents.hosted pkg.mod:Class`, the request as JSON on stdin: run it, write its result."""
    if len(argv) != 1:
        print(f"usage: python -m {MODULE} pkg.mod:Class < request.json", file=sys.stderr)
        return 2
    request = json.load(sys.stdin)
    result = run_class(argv[0], request)
    Path(request["result_file"]).write_text(json.dumps(asdict(result), default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal exit: threads the class left running would otherwise keep the process, and the attempt, waiting.
    os._exit(code)
