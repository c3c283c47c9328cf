"""The built-in llm agent: any OpenAI-compatible model, one shell command per turn, in the spirit of mini-swe-agent.

The loop is linear: the model answers with one command in a ```bash block; the command runs as its own process in
the worktree (time limit, bounded output); its exit code and output are the next user message. The model ends the
attempt by running `echo FLEET_DONE`. Steps, tokens, cost and wall time are limited, and each limit ends the attempt
with its own reason. The conversation, one JSON object per line, is the transcript; each line is also handed to
task.on_output as it is written, so `fleet logs -f` and the web page follow the conversation live.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from workers.agents.base import AgentOptions, agent_env, run_agent_command
from workers.agents.contracts import AgentResult, AgentTask
from workers.agents.llm.client import ChatClient, ModelServerError, Reply
from workers.agents.llm.config import LlmConfig, LlmConfigError, load_config
from workers.gateway.protocols import Upstream

SENTINEL = "FLEET_DONE"
BASH_BLOCK = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.S)

SYSTEM_PROMPT = f"""You are a careful software engineer working in a git repository, which is your current directory.
Every reply has a short explanation and then exactly one shell command in a ```bash block.
Each command runs in a new shell in the repository (cd and variables do not carry over); you will see its exit code
and output. Edit files with shell tools (sed, python, cat <<'EOF' > file). Do not commit. Do not weaken the tests.
When the task is done and you have checked it, reply with exactly this command:

```bash
echo {SENTINEL}
```"""

FORMAT_ERROR = (
    "Your reply must contain exactly one ```bash block with one command (it had {count}). "
    f"To finish, reply with the command: echo {SENTINEL}"
)


@dataclass
class Conversation:
    """The messages sent to the model, the same messages as transcript lines, and the running totals."""

    messages: list[dict[str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    on_output: Callable[[bytes], None] | None = None  # the live transcript
    secret: str = ""  # never written out

    def add(self, role: str, content: str, **extra: Any) -> None:
        self.messages.append({"role": role, "content": content})
        self.log(role=role, content=content, step=self.steps, **extra)

    def log(self, **record: Any) -> None:
        line = json.dumps(record, ensure_ascii=False)
        self.lines.append(line)
        if self.on_output is not None:
            self.on_output((line.replace(self.secret, "[redacted]") if self.secret else line).encode() + b"\n")

    def transcript(self, limit: int, secret: str) -> str:
        """The JSON lines, whole lines dropped from the middle past limit bytes, the API key never included."""
        lines = _bounded(self.lines, limit)
        text = "\n".join(lines) + "\n"
        return text.replace(secret, "[redacted]") if secret else text


class Stop(Exception):
    """The attempt ends here; the reason says why (None: the model finished)."""

    def __init__(self, reason: str | None, *, timed_out: bool = False, cancelled: bool = False) -> None:
        self.reason = reason
        self.timed_out = timed_out
        self.cancelled = cancelled
        super().__init__(reason or "finished")


class LlmAgent:
    """Fleet's own agent: an OpenAI-compatible chat model driving shell commands in the worktree."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options

    def model_upstreams(self) -> dict[str, Upstream]:
        """The model gateway sends this agent's calls on to its configured server, with its configured key."""
        try:
            config = load_config(self.options)
        except LlmConfigError:
            return {}
        return {"openai": Upstream(config.base_url, config.api_key, "FLEET_LLM_API_KEY")}

    def model_prices(self) -> list[str]:
        """The agent's own prices (price_in, price_out) for its model, under the deployment's and repository's."""
        try:
            config = load_config(self.options)
        except LlmConfigError:
            return []
        return (
            [f"{config.model}={config.price_in:f}/{config.price_out:f}"] if config.price_in or config.price_out else []
        )

    def run(self, task: AgentTask) -> AgentResult:
        """Talk to the model until it says FLEET_DONE, a limit is reached, the server fails or the task is cancelled."""
        started = time.monotonic()
        try:
            config = through_gateway(load_config(self.options), task.env)
        except LlmConfigError as exc:
            return AgentResult(None, "", 0.0, error=str(exc))
        convo = Conversation(on_output=task.on_output, secret=config.api_key)
        client = ChatClient(config, task.cancelled)
        try:
            stop = _Loop(config, task, self.options, convo, client, started).run()
        finally:
            client.close()
        cost = config.cost(convo.tokens_in, convo.tokens_out)
        totals = dict(steps=convo.steps, tokens_in=convo.tokens_in, tokens_out=convo.tokens_out, cost_usd=cost)
        convo.log(event="end", reason=stop.reason or "finished", **totals)
        return AgentResult(
            exit_code=0 if stop.reason is None else None,
            transcript=convo.transcript(self.options.transcript_limit, config.api_key),
            duration=time.monotonic() - started,
            timed_out=stop.timed_out,
            cancelled=stop.cancelled,
            error=stop.reason,
            tokens_in=convo.tokens_in,
            tokens_out=convo.tokens_out,
            cost_usd=cost,
        )


class _Loop:
    """One attempt's turns; every way out is a Stop."""

    def __init__(
        self,
        config: LlmConfig,
        task: AgentTask,
        options: AgentOptions,
        convo: Conversation,
        client: ChatClient,
        started: float,
    ) -> None:
        self.config, self.task, self.convo, self.client = config, task, convo, client
        self.env = agent_env(task, options)
        self.shell = shutil.which("bash", path=self.env["PATH"]) or "/bin/sh"
        budget = min(task.timeout, config.wall_seconds) if config.wall_seconds > 0 else task.timeout
        self.budget = budget
        self.deadline = started + budget
        self.grace = options.grace_seconds

    def run(self) -> Stop:
        self.convo.add("system", SYSTEM_PROMPT)
        self.convo.add("user", self.task.prompt_file.read_text(encoding="utf-8", errors="replace"))
        try:
            while True:
                self._turn()
        except Stop as stop:
            return stop

    def _turn(self) -> None:
        self._check_clock()
        if self.convo.steps >= self.config.step_limit:
            raise Stop(f"llm agent stopped: step limit of {self.config.step_limit} reached before {SENTINEL}")
        self.convo.steps += 1
        reply = self._ask()
        commands = BASH_BLOCK.findall(reply.content)
        if len(commands) != 1:
            if not commands and SENTINEL in reply.content:
                raise Stop(None)
            self.convo.add("user", FORMAT_ERROR.format(count=len(commands)), kind="format_error")
            return
        self._execute(commands[0].strip())

    def _ask(self) -> Reply:
        try:
            reply = self.client.complete(self.convo.messages, self.deadline)
        except ModelServerError as exc:
            self._check_clock()  # a cancel or the deadline during the retries is the real cause
            raise Stop(f"llm agent: {exc}") from None
        self.convo.tokens_in += reply.tokens_in
        self.convo.tokens_out += reply.tokens_out
        self.convo.add("assistant", reply.content, tokens_in=reply.tokens_in, tokens_out=reply.tokens_out)
        self._check_budget()
        return reply

    def _check_clock(self) -> None:
        if self.task.cancelled.is_set():
            raise Stop("agent cancelled", cancelled=True)
        if time.monotonic() >= self.deadline:
            raise Stop(f"llm agent timed out after {self.budget:g}s", timed_out=True)

    def _check_budget(self) -> None:
        used = self.convo.tokens_in + self.convo.tokens_out
        if self.config.token_limit and used > self.config.token_limit:
            raise Stop(f"llm agent stopped: token limit of {self.config.token_limit} exceeded ({used} used)")
        cost = self.config.cost(self.convo.tokens_in, self.convo.tokens_out)
        if self.config.cost_limit and cost > self.config.cost_limit:
            raise Stop(f"llm agent stopped: cost limit of ${self.config.cost_limit:g} exceeded (${cost:.4f} spent)")

    def _execute(self, command: str) -> None:
        timeout = max(0.1, min(self.config.command_timeout, self.deadline - time.monotonic()))
        result = run_agent_command(
            replace(self.task, on_output=None),  # its output reaches the live transcript as the observation line
            [self.shell, "-c", command],
            env=self.env,
            timeout=timeout,
            limit_bytes=self.config.output_limit,
            grace_seconds=self.grace,
        )
        if result.output.strip().splitlines()[:1] == [SENTINEL]:
            raise Stop(None)
        self._check_clock()
        note = f"\nThe command was killed after {timeout:g}s." if result.timed_out else ""
        observation = f"<returncode>{result.exit_code}</returncode>\n<output>\n{result.output}</output>{note}"
        self.convo.add("user", observation, kind="observation", exit_code=result.exit_code, duration=result.duration)


def through_gateway(config: LlmConfig, env: dict[str, str]) -> LlmConfig:
    """The config pointed at the attempt's model gateway, when it has one (it holds the real key)."""
    if not env.get("FLEET_GATEWAY_URL"):
        return config
    return dataclasses.replace(config, base_url=env["FLEET_GATEWAY_URL"] + "/openai", api_key=env["FLEET_GATEWAY_KEY"])


def _bounded(lines: list[str], limit: int) -> list[str]:
    if sum(len(line) + 1 for line in lines) <= limit or len(lines) < 3:
        return lines
    head, size = lines[:2], sum(len(line) + 1 for line in lines[:2])
    tail: list[str] = []
    for line in reversed(lines[2:]):
        if size + len(line) + 1 > limit:
            break
        tail.insert(0, line)
        size += len(line) + 1
    omitted = len(lines) - len(head) - len(tail)
    return [*head, json.dumps({"event": "omitted", "lines": omitted}), *tail]
