"""One attempt's use of the gateway: its upstreams and keys, the variables that point its agent at the gate, the
meter that records its calls and holds its ticket's budget, and what its calls add up to."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from db import queries
from db.engine import Database
from db.models import ModelCall
from system.settings import Settings
from workers.gateway.handler import Call
from workers.gateway.prices import Price, find_price, max_output
from workers.gateway.protocols import Upstream
from workers.gateway.usage import CHARS_PER_TOKEN, Usage

# Where each family's real key and (to send it elsewhere than the provider) base URL come from in the worker's
# environment: the variables the providers' own SDKs read.
KEY_VARIABLES = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}
BASE_VARIABLES = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_BASE"),
}
# A call in flight holds its input and its output limit; one that names none holds its model's most output
# (prices.MAX_OUTPUT_TOKENS), or for a model not known there this much, about what the agent CLIs that name one ask for
# (Claude Code 32,000), so that leaving it out does not hold less.
HELD_OUTPUT_TOKENS = 32_768
# How long a gate whose worker stopped beating and whose calls hold nothing new may still have a call in flight.
ALIVE_WITHIN_SECONDS = 60.0
PROVIDERS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def upstreams(settings: Settings, environ: Mapping[str, str], agent: Mapping[str, Upstream]) -> dict[str, Upstream]:
    """Each family's upstream: the agent's own (the llm agent's server), else FLEET_GATEWAY_<FAMILY>_URL, else the
    worker's OPENAI_BASE_URL and the like, else the provider; the key from the family's variables in the worker's
    environment."""
    chosen = {
        "openai": settings.gateway_openai_url,
        "anthropic": settings.gateway_anthropic_url,
        "gemini": settings.gateway_gemini_url,
    }
    found = {}
    for family, provider in PROVIDERS.items():
        given = [chosen[family], *(environ.get(name, "") for name in BASE_VARIABLES[family])]
        base = next((url for url in given if url), provider)
        key_name = next((name for name in KEY_VARIABLES[family] if environ.get(name)), KEY_VARIABLES[family][0])
        found[family] = Upstream(base, environ.get(key_name, ""), key_name)
    return found | dict(agent)


def agent_variables(url: str, key: str) -> dict[str, str]:
    """The variables every agent gets: each SDK's base URL at the gate and the placeholder key as its API key.

    Claude Code reads ANTHROPIC_BASE_URL (appending /v1/messages) and ANTHROPIC_API_KEY; gemini-cli
    GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY; aider and mini-swe-agent, through litellm, OPENAI_API_BASE /
    ANTHROPIC_API_BASE / GEMINI_API_BASE and the keys; the OpenAI SDK OPENAI_BASE_URL. Codex and opencode are
    given OPENAI_BASE_URL in their own configuration by their adapters' prepare() (workers/agents/codex.py,
    opencode.py), the llm agent by through_gateway (workers/agents/llm/agent.py).
    """
    openai, anthropic, gemini = f"{url}/openai", f"{url}/anthropic", f"{url}/gemini"
    return {
        "FLEET_GATEWAY_URL": url,
        "FLEET_GATEWAY_KEY": key,
        "OPENAI_BASE_URL": openai,
        "OPENAI_API_BASE": openai,
        "OPENAI_API_KEY": key,
        "ANTHROPIC_BASE_URL": anthropic,
        "ANTHROPIC_API_BASE": anthropic,
        "ANTHROPIC_API_KEY": key,
        "GOOGLE_GEMINI_BASE_URL": gemini,
        "GEMINI_API_BASE": gemini,
        "GEMINI_API_KEY": key,
        "GOOGLE_API_KEY": key,
    }


def call_cost(prices: Mapping[str, Price], call: Call) -> float | None:
    """What the call cost; 0 when nothing was billed, None when the model has no price (unpriced)."""
    if call.usage is None or (call.usage.input_tokens + call.usage.output_tokens) == 0:
        return 0.0
    price = find_price(prices, call.model)
    return None if price is None else price.cost(call.usage)


@dataclass
class AttemptMeter:
    """Records an attempt's calls as they end, and refuses its calls once its ticket's spend reaches the budget: one
    gate's, its methods called on that gate's writer thread. Its holds are its gate's own (a row of `budget_holds`)."""

    db: Database
    attempt_id: int
    ticket_id: int
    budget_usd: float
    prices: Mapping[str, Price]
    worker: str = ""  # the worker whose heartbeat says the gate may still be alive
    alive_within: float = ALIVE_WITHIN_SECONDS  # the lease's length: a worker that beat since may still call
    holding: float = field(default=0.0, init=False)  # what its admit wrote and no record let go of yet
    gate: str = field(default_factory=lambda: uuid.uuid4().hex, init=False)
    written: bool = field(default=False, init=False)  # its row of holds written

    @property
    def own(self) -> queries.GateHold:
        return queries.GateHold(self.gate, self.attempt_id, self.worker)

    def hold(self, model: str, request_bytes: int, output_tokens: int) -> float:
        price = find_price(self.prices, model)
        if price is None or not self.budget_usd:  # nothing to hold it against
            return 0.0
        output = output_tokens if output_tokens > 0 else (max_output(model) or HELD_OUTPUT_TOKENS)
        return price.cost(Usage(request_bytes // CHARS_PER_TOKEN, output))

    def admit(self, model: str, usd: float) -> str | None:
        if not self.budget_usd:
            return None
        if find_price(self.prices, model) is None:
            return (
                f"the model {model or '(none named)'!r} has no price, so the ticket's budget of ${self.budget_usd:.2f}"
                " cannot be held: price it (FLEET_MODEL_PRICES, or the repository's model_prices)"
            )
        with self.db.session() as s:
            queries.lock_budget(s, self.ticket_id)
            spent, held = queries.budget_in_use(s, self.ticket_id)
            if spent + held >= self.budget_usd and held > self.holding:  # an earlier gate's holds may be dead by now
                queries.let_go_of_dead_gates(s, self.own, self.alive_within)
                spent, held = queries.budget_in_use(s, self.ticket_id)
            admitted = spent + held < self.budget_usd
            if admitted:
                queries.hold_budget(s, self.own, usd, first=not self.written)
        if admitted:  # written: the transaction committed
            self.holding += usd
            self.written = True
            return None
        in_flight = f", ${held:.4f} held by calls in flight for their input and output limits" if held else ""
        return f"the ticket's budget of ${self.budget_usd:.2f} ran out mid-attempt (${spent:.4f} spent{in_flight})"

    def open(self) -> None:
        if self.budget_usd:
            with self.db.session() as s:
                queries.let_go_of_dead_gates(s, self.own, self.alive_within)

    def release(self) -> None:
        if self.written:  # its row, with what calls cut before they were recorded (or whose record failed) held
            with self.db.session() as s:
                queries.release_holds(s, self.own)
            self.holding, self.written = 0.0, False

    def record(self, call: Call) -> None:
        usage = call.usage
        with self.db.session() as s:
            queries.add_model_call(
                s,
                self.attempt_id,
                held=call.held,
                gate=self.gate,
                protocol=call.wire.value,
                model=call.model[:200],
                streamed=call.streamed,
                status=call.status,
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                cached_tokens=usage.cached_tokens if usage else 0,
                cost_usd=call_cost(self.prices, call),
                duration=call.duration,
                error=call.error,
                request=call.request,
                response=call.response,
            )
        self.holding = max(0.0, self.holding - call.held)


def call_line(call: ModelCall) -> str:
    """One transcript line for a metered call."""
    tokens = f"{call.input_tokens} in ({call.cached_tokens} cached) / {call.output_tokens} out"
    price = "unpriced" if call.cost_usd is None else f"${call.cost_usd:.6f}"
    stream = " stream" if call.streamed else ""
    error = f" - {call.error}" if call.error else ""
    what = f"{call.protocol}{stream} {call.model or '?'} HTTP {call.status}"
    return f"[gateway] call {call.seq}: {what}, {tokens}, {price}{error}"


def cross_check(reported: tuple[int, int, float], metered: queries.Metered) -> list[str]:
    """Where what the agent reported differs from what the gateway metered by more than 1%."""
    lines = []
    ours_all = (metered.tokens_in, metered.tokens_out, metered.cost_usd)
    for name, theirs, ours in zip(("input tokens", "output tokens", "cost"), reported, ours_all, strict=True):
        if theirs and queries.reported_differs(theirs, ours):
            lines.append(f"{name}: the agent reported {theirs:g}, the gateway metered {ours:g}")
    return lines


def key_failures(calls: Iterable[Call], upstreams: Mapping[str, Upstream]) -> str | None:
    """The error naming the key a provider refused (HTTP 401/403), or None."""
    for call in calls:
        if call.status in (401, 403):
            family = {"openai-chat": "openai", "openai-responses": "openai", "anthropic-messages": "anthropic"}.get(
                call.wire.value, "gemini"
            )
            upstream = upstreams[family]
            given = (
                f"{upstream.key_name} as set in the worker's environment"
                if upstream.key
                else f"no {upstream.key_name} set"
            )
            return f"the model API {upstream.base_url} refused the API key (HTTP {call.status}; {given})"
    return None
