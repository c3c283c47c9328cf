"""The llm agent's settings: from `key=value` agent arguments, else FLEET_LLM_* in the worker's environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.agents.base import AgentError, AgentOptions

ENV_PREFIX = "FLEET_LLM_"


class LlmConfigError(AgentError):
    """The llm agent's settings are missing or malformed."""


@dataclass(frozen=True)
class LlmConfig:
    """Where the model is, what it may spend, and how commands run. Prices are USD per million tokens."""

    base_url: str = ""
    model: str = ""
    api_key: str = ""
    step_limit: int = 30
    token_limit: int = 0  # 0: no limit
    cost_limit: float = 0.0  # 0: no limit
    wall_seconds: float = 0.0  # 0: only the attempt's own time limit
    command_timeout: float = 120.0
    output_limit: int = 10_000
    request_timeout: float = 120.0
    retries: int = 2
    backoff_seconds: float = 1.0
    price_in: float = 0.0
    price_out: float = 0.0
    temperature: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1_000_000


def load_config(options: AgentOptions, environ: Mapping[str, str] | None = None) -> LlmConfig:
    """Defaults, overridden by FLEET_LLM_<FIELD>, overridden by `field=value` in options.extra_args and the model."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field in dataclasses.fields(LlmConfig):
        if f"{ENV_PREFIX}{field.name.upper()}" in environ:
            values[field.name] = environ[f"{ENV_PREFIX}{field.name.upper()}"]
    values.update(_parse_args(options.extra_args))
    if options.model:
        values["model"] = options.model
    converted: dict[str, Any] = {name: _convert(name, text) for name, text in values.items()}
    config = LlmConfig(**converted)
    if not config.base_url:
        raise LlmConfigError(
            "the llm agent needs a model server: set FLEET_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1)"
        )
    if not config.model:
        raise LlmConfigError("the llm agent needs a model name: set FLEET_LLM_MODEL or pass --model")
    return config


def _parse_args(args: tuple[str, ...]) -> dict[str, str]:
    known = {f.name for f in dataclasses.fields(LlmConfig)} - {"api_key"}  # a key on a command line leaks
    parsed = {}
    for arg in args:
        name, sep, value = arg.removeprefix("--").partition("=")
        name = name.replace("-", "_")
        if not sep or name not in known:
            raise LlmConfigError(f"llm agent argument {arg!r} is not field=value with a field in {sorted(known)}")
        parsed[name] = value
    return parsed


def _convert(name: str, text: str) -> str | int | float:
    kind = {f.name: f.type for f in dataclasses.fields(LlmConfig)}[name]
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise LlmConfigError(f"llm agent setting {name} must be a number, not {text!r}") from None
    return text
