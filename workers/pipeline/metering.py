"""The attempt's gate on the model gateway: opened before its agent runs, read when it ends."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from db import queries
from db.engine import transient
from system.retry import retrying
from workers.agents.contracts import Agent, AgentResult
from workers.gateway.attempt import AttemptMeter, agent_variables, call_line, cross_check, key_failures, upstreams
from workers.gateway.prices import price_table
from workers.gateway.server import GatewayGate
from workers.pipeline.job import Job
from workers.runtime import WorkerRuntime


def open_gate(rt: WorkerRuntime, job: Job, agent: Agent) -> GatewayGate:
    """The attempt's gate: the agent's own upstream (the llm agent's server) or the providers, priced by the
    defaults, the deployment's prices and the repository's, in that order of precedence, lowest first."""
    own = getattr(agent, "model_upstreams", None)
    own_prices = getattr(agent, "model_prices", None)
    prices = price_table(
        own_prices() if callable(own_prices) else (), rt.settings.model_prices, job.repo_settings.model_prices
    )
    meter = AttemptMeter(
        rt.db, job.attempt_id, job.ticket_id, job.budget_usd, prices, rt.worker_id, rt.settings.lease_seconds
    )
    return rt.gateway.open(upstreams(rt.settings, os.environ, own() if callable(own) else {}), meter)


def gate_env(gate: GatewayGate) -> dict[str, str]:
    """What points the agent at its gate."""
    return agent_variables(gate.url, gate.key)


def settle_usage(
    rt: WorkerRuntime, job: Job, gate: GatewayGate, result: AgentResult
) -> tuple[AgentResult, dict[str, Any]]:
    """The result with the gateway's figures in place of the agent's (kept beside them), the error the gateway saw
    (the budget ran out, a refused key), and a line per call in the transcript."""
    reported = (result.tokens_in, result.tokens_out, result.cost_usd)
    extra: dict[str, Any] = dict(
        reported_tokens_in=result.tokens_in,
        reported_tokens_out=result.tokens_out,
        reported_cost_usd=result.cost_usd,
    )
    if not gate.calls:  # nothing went through the gate: nothing to read back (and no database needed to finish)
        return result, extra | {"unpriced_calls": 0}
    metered, lines = retrying(lambda: _read_calls(rt, job), transient, rt.settings.write_retry_seconds)
    extra["unpriced_calls"] = metered.unpriced
    lines += [f"[gateway] cross-check, {line}" for line in cross_check(reported, metered)]
    if metered.unpriced:
        lines.append(f"[gateway] {metered.unpriced} call(s) unpriced: their model has no price (set model_prices)")
    error = result.error
    if result.cancelled:
        pass
    elif gate.refused:
        error = f"budget: {gate.refused}; the gateway refused the agent's further model calls"
    elif refused_key := key_failures(gate.calls, gate.upstreams):
        error = "; ".join(filter(None, (refused_key, result.error)))
    settled = replace(
        result,
        tokens_in=metered.tokens_in,
        tokens_out=metered.tokens_out,
        cost_usd=metered.cost_usd,
        error=error,
        transcript=result.transcript + "".join(line + "\n" for line in lines),
    )
    return settled, extra


def _read_calls(rt: WorkerRuntime, job: Job) -> tuple[queries.Metered, list[str]]:
    """The attempt's calls as the gateway recorded them: their sums, and a transcript line each."""
    with rt.db.session() as s:
        return queries.metered(s, job.attempt_id), [call_line(call) for call in queries.model_calls(s, job.attempt_id)]
