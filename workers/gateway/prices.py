"""Model prices in USD per million tokens: defaults for well-known models, overridable per deployment and repository.

An override is `MODEL=INPUT/OUTPUT[/CACHED]` (FLEET_MODEL_PRICES for the deployment, the `model_prices` repository
setting); the repository's win over the deployment's, which win over the defaults. A model is matched by its name
without a provider prefix (`openai/gpt-4o`) and, failing that, as a snapshot of a known name: that name followed by
a date or a version tag only (`gpt-4o-2024-08-06`, `claude-3-5-haiku-20241022`, `gemini-2.0-flash-001`,
`-latest`, `-preview-05-20`). Another model that merely starts with a known name (`gpt-5-pro`, `o3-pro`) is
priced differently by its provider, so it is unpriced: its tokens are recorded and its cost is None, never a
silent $0 or another model's price.

The defaults are the providers' list prices for standard requests (platform.openai.com/pricing,
anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing); long-context tiers, batch discounts and 1-hour cache
writes are not modelled: override a model whose bill differs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from workers.gateway.usage import Usage

SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest|preview(-\d{2}-\d{2}(-\d{4})?)?|v\d+(:\d+)?)")
PRICE_LINE = re.compile(r"^(?P<model>[^=\s]{1,200})=(?P<input>[\d.]+)/(?P<output>[\d.]+)(?:/(?P<cached>[\d.]+))?$")
MILLION = 1_000_000
Entry = TypeVar("Entry")


class PriceError(ValueError):
    """A price override is not MODEL=INPUT/OUTPUT[/CACHED]."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens; cache reads and writes default to the input price."""

    input: float
    output: float
    cached: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        """What the usage costs: uncached input, cache reads, cache writes and output, each at its own price."""
        cached = self.input if self.cached is None else self.cached
        write = self.input if self.cache_write is None else self.cache_write
        plain = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
        dollars = plain * self.input + usage.cached_tokens * cached + usage.cache_write_tokens * write
        return (dollars + usage.output_tokens * self.output) / MILLION


def _anthropic(input: float, output: float) -> Price:
    return Price(input, output, cached=input * 0.1, cache_write=input * 1.25)


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "o3": Price(2.00, 8.00, 0.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-codex": Price(1.25, 10.00, 0.125),
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4": _anthropic(15.00, 75.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4": _anthropic(3.00, 15.00),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
}


# The most output tokens each model writes in one answer, as its provider documents it (platform.openai.com/docs/models,
# docs.anthropic.com models overview, ai.google.dev/gemini-api/docs/models): what a call that names no output limit
# holds against the budget while it is in flight. Claude 3.7 Sonnet writes 128,000 with Anthropic's output-128k beta.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-4o": 16_384,
    "gpt-4o-mini": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "o3": 100_000,
    "o4-mini": 100_000,
    "gpt-5": 128_000,
    "gpt-5-mini": 128_000,
    "gpt-5-nano": 128_000,
    "gpt-5-codex": 128_000,
    "claude-opus-4-1": 32_000,
    "claude-opus-4": 32_000,
    "claude-sonnet-4-5": 64_000,
    "claude-sonnet-4": 64_000,
    "claude-3-7-sonnet": 128_000,
    "claude-haiku-4-5": 64_000,
    "claude-3-5-haiku": 8_192,
    "gemini-2.5-pro": 65_536,
    "gemini-2.5-flash": 65_536,
    "gemini-2.5-flash-lite": 65_536,
    "gemini-2.0-flash": 8_192,
}


def parse_price(line: str) -> tuple[str, Price]:
    """`MODEL=INPUT/OUTPUT[/CACHED]` as (model, price); PriceError names what is wrong."""
    match = PRICE_LINE.match(line.strip())
    try:
        if match is None:
            raise ValueError
        cached = match["cached"]
        price = Price(float(match["input"]), float(match["output"]), float(cached) if cached else None)
    except ValueError:
        raise PriceError(f"model price {line!r} is not MODEL=INPUT/OUTPUT[/CACHED] in USD per million tokens") from None
    return normalise(match["model"]), price


def price_table(*overrides: Iterable[str], base: Mapping[str, Price] = DEFAULT_PRICES) -> dict[str, Price]:
    """The defaults with each list of overrides laid over them in turn (later lists win)."""
    table = dict(base)
    for lines in overrides:
        table.update(parse_price(line) for line in lines)
    return table


def normalise(model: str) -> str:
    """The model's name as prices are keyed: lower case, without `models/` or a provider prefix."""
    return model.strip().lower().removeprefix("models/").rpartition("/")[2]


def find_price(table: Mapping[str, Price], model: str) -> Price | None:
    """The model's price: its own entry, else the entry it is a dated or versioned snapshot of; None when unpriced."""
    return _entry(table, model)


def max_output(model: str) -> int | None:
    """The most output tokens the model writes in one answer, matched as prices are; None when it is not known."""
    return _entry(MAX_OUTPUT_TOKENS, model)


def _entry(table: Mapping[str, Entry], model: str) -> Entry | None:
    name = normalise(model)
    if name in table:
        return table[name]
    stems = [key for key in table if name.startswith(key) and SNAPSHOT.fullmatch(name[len(key) :])]
    return table[max(stems, key=len)] if stems else None
